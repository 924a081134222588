"""Standby mode of the model server, as real processes: it imports, says ready, waits; an assignment makes it
the instance (its log, environment, working directory), which then answers like a normally started one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from processors.demo import IRIS_SAMPLE
from processors.modelserver import handoff
from processors.registry import local_launch
from tests.processors.helpers import free_port

READY_TIMEOUT_SECONDS = 90


class Standby:
    """`python -m processors.modelserver --standby` with the agent's end of the channel kept here."""

    def __init__(self, tmp_path: Path, cwd: str, env: dict[str, str]):
        self.channel, standby_end = handoff.channel_pair()
        self.pool_log = tmp_path / "standby.log"
        with open(self.pool_log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "processors.modelserver", "--standby"], stdin=standby_end, stdout=log,
                stderr=log, cwd=cwd, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
            )
        standby_end.close()
        self.channel.settimeout(READY_TIMEOUT_SECONDS)

    def wait_ready(self) -> dict:
        message, _ = handoff.receive(self.channel)
        assert message["type"] == "ready" and message["pid"] == self.process.pid, message
        return message

    def assign(self, argv: list[str], env: dict[str, str], cwd: str, log_path: Path) -> dict:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            handoff.send(self.channel, {"type": "assign", "name": "test-v1-0", "argv": argv, "env": env, "cwd": cwd,
                                        "sent_at": time.time()}, [log_fd])
        finally:
            os.close(log_fd)
        answer, _ = handoff.receive(self.channel)
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.channel.close()


@pytest.fixture
def standbys():
    started: list[Standby] = []
    yield started
    for standby in started:
        standby.stop()


def wait_for_answer(url: str, process: subprocess.Popen, log_path: Path, **post) -> requests.Response:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log_path.read_text()}"
        try:
            return requests.post(url, timeout=5, **post) if post else requests.get(url, timeout=5)
        except requests.ConnectionError:
            time.sleep(0.02)
    raise AssertionError(f"no answer from {url}:\n{log_path.read_text()}")


def test_a_standby_becomes_the_iris_instance_it_is_assigned_and_answers_v1(demo_models, standbys, tmp_path):
    service_file = {"name": "demo_iris", "processor": "sklearn"}
    launch = local_launch(service_file, service_name="demo_iris", model_dir=str(demo_models["iris_model"].parent),
                          python=sys.executable, warm_up_path=str(demo_models["iris_warm_up"]))
    standby = Standby(tmp_path, launch.cwd, launch.env)
    standbys.append(standby)
    ready = standby.wait_ready()
    assert ready["imports_seconds"] > 0
    port = free_port()
    argv = [item.replace("{port}", str(port)) for item in launch.argv]
    log_path = tmp_path / "instance.log"
    env = {**os.environ, **launch.env, "PORT": str(port), "FERRY_INSTANCE": "test-v1-0"}

    assert standby.assign(argv, env, launch.cwd, log_path) == {"type": "assigned", "pid": standby.process.pid}

    url = f"http://127.0.0.1:{port}/v1/models/demo_iris:predict"
    response = wait_for_answer(url, standby.process, log_path, json={"instances": [IRIS_SAMPLE]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [0]}
    assert requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).status_code == 200
    log = log_path.read_text()
    for line in ("imported the serving libraries in", "in the warm pool's standby process",
                 "loaded sklearn model demo_iris in", "since the assignment)", "warmed up with 2 requests",
                 f"serving model demo_iris on http://127.0.0.1:{port}"):
        assert line in log, line
    assert "waiting for an assignment" in standby.pool_log.read_text()
    assert "waiting for an assignment" not in log  # what it said before is in the pool's log, not the instance's

    standby.process.send_signal(signal.SIGTERM)  # as a normal start: finishes in-flight requests, exits 0
    assert standby.process.wait(30) == 0
    assert "Finished server process" in log_path.read_text()


def test_it_runs_a_python_handler_with_the_instance_environment_and_working_directory(standbys, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(textwrap.dedent("""
        import os, sys

        def predict(body):
            return {"port": os.environ.get("PORT"), "instance": os.environ.get("FERRY_INSTANCE"),
                    "secret": os.environ.get("ONLY_IN_THE_STANDBY"), "cwd": os.getcwd(), "argv": sys.argv[1:]}
    """))
    service_file = {"name": "echo", "processor": "python", "processor_entry": "app.py"}
    launch = local_launch(service_file, service_name="echo", model_dir=None, python=sys.executable,
                          processor_dir=str(code))
    standby = Standby(tmp_path, launch.cwd, {**launch.env, "ONLY_IN_THE_STANDBY": "x"})
    standbys.append(standby)
    standby.wait_ready()
    port = free_port()
    argv = [item.replace("{port}", str(port)) for item in launch.argv]
    env = {"PATH": os.environ["PATH"], **launch.env, "PORT": str(port), "FERRY_INSTANCE": "echo-v1-0"}
    log_path = tmp_path / "instance.log"
    assert standby.assign(argv, env, launch.cwd, log_path)["type"] == "assigned"

    response = wait_for_answer(f"http://127.0.0.1:{port}/api/predict/echo", standby.process, log_path, json={})

    assert response.json() == {"port": str(port), "instance": "echo-v1-0", "secret": None, "cwd": launch.cwd,
                               "argv": []}


def test_a_standby_exits_when_the_agent_closes_the_channel(standbys, tmp_path):
    root = str(Path(__file__).resolve().parents[2])
    standby = Standby(tmp_path, root, {"PYTHONPATH": root})
    standbys.append(standby)
    standby.wait_ready()

    standby.channel.close()  # as when the agent dies

    assert standby.process.wait(30) == 0
    assert "the node agent closed the channel; exiting" in standby.pool_log.read_text()


def test_a_standby_dies_at_once_on_sigterm_while_it_waits(standbys, tmp_path):
    root = str(Path(__file__).resolve().parents[2])
    standby = Standby(tmp_path, root, {"PYTHONPATH": root})
    standbys.append(standby)
    standby.wait_ready()

    standby.process.send_signal(signal.SIGTERM)

    assert standby.process.wait(10) == -signal.SIGTERM
