"""The real vLLM engine in the suite: its environment installed once per run, a tiny model made once, and
`make run` (scripts/run) on a database, Redis, var dir and ports of its own, which the tests drive through the
REST API and the gateway as a user would.

The engine: FERRY_VLLM_PYTHON names an environment that has it already (nothing is installed); otherwise it is
installed with Ferry's own installer (deployer/engines.py) into FERRY_TEST_ENGINES_DIR (default: the user's
cache, `ferry-tests/engines`), where the next run finds it ready. The platform is then pointed at it with
FERRY_VLLM_PYTHON, as an operator with an engine of their own would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from contracts.engine_load import parse_metrics
from tests.harness.process import free_port, scratch_database, stop_platform

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 300  # migrate, bootstrap and start every process on a busy 2-core machine
# The engine's first start compiles the model with torch (a minute or more on a busy host), after loading
# torch and vLLM themselves.
ENGINE_TIMEOUT = 900


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.llm)


@pytest.fixture(scope="session")
def engine_python() -> str:
    configured = os.environ.get("FERRY_VLLM_PYTHON")
    if configured:
        return configured
    from deployer.engines import Engine, install
    from processors.llm import DEFAULT_PACKAGE, engine_name

    package = os.environ.get("FERRY_VLLM_PACKAGE", DEFAULT_PACKAGE)
    engines = Path(os.environ.get("FERRY_TEST_ENGINES_DIR") or Path.home() / ".cache" / "ferry-tests" / "engines")
    engine = Engine(package, engines / engine_name(package))
    deadline = time.monotonic() + 3600
    while not engine.ready():
        with engine.lock() as held:
            if held and not engine.ready():
                said = lambda reason, message, warning=False: print(f"\n{reason}: {message}", flush=True)  # noqa: E731
                assert install(engine, said), (engine.directory / "install.log").read_text()[-5000:]
        if not held:  # another test run installs it: wait for it
            assert time.monotonic() < deadline, f"{engine.directory} stayed locked by another install"
            time.sleep(2)
    return engine.python


@pytest.fixture(scope="session")
def models_root(tmp_path_factory) -> Path:
    """A file source root of the platform's: the tiny model is deployed from it in place (file://)."""
    root = tmp_path_factory.mktemp("llm-models")
    os.chmod(root, 0o755)
    for parent in root.parents:  # pytest's own directories are 0700; instances run as users of their own
        if str(parent).startswith(str(tmp_path_factory.getbasetemp().parent)) and parent.is_dir():
            parent.chmod(parent.stat().st_mode | 0o055)
    return root


@pytest.fixture(scope="session")
def tiny_model(engine_python, models_root) -> Path:
    """processors/tiny_llm.py, run with the engine's python (it has transformers, tokenizers and torch)."""
    target = models_root / "tiny"
    done = subprocess.run([engine_python, "-m", "processors.tiny_llm", str(target)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-5000:]
    return target


class Platform:
    """scripts/run as a child of the test, on free ports, with the admin's API token."""

    def __init__(self, var_dir: Path, database_url: str, **extra_env: str):
        self.var_dir = var_dir
        self.web_port, self.gateway_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.web_port}/api/v2"
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        env = {key: value for key, value in os.environ.items()
               # The harness's eager Celery and shared Redis are for in-process tests: `make run` has workers and
               # its embedded Redis.
               if key not in ("CELERY_TASK_ALWAYS_EAGER", "REDIS_URL", "CELERY_BROKER_URL")}
        self.env = {**env, "FERRY_VAR_DIR": str(var_dir), "DATABASE_URL": database_url,
                    "FERRY_REDIS_PORT": str(free_port()), "FERRY_WEB_PORT": str(self.web_port),
                    "FERRY_GATEWAY_PORT": str(self.gateway_port), "FERRY_GATEWAY_URL": self.gateway,
                    "FERRY_WARM_POOL_SIZE": "0", "NO_COLOR": "1", **extra_env}
        self.lines: list[str] = []
        self.proc = subprocess.Popen([str(ROOT / "scripts" / "run")], cwd=ROOT, env=self.env, text=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        self._wait_until_serving()
        self.headers = {"Authorization": f"Bearer {(var_dir / 'admin-token').read_text().strip()}"}

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self, last: int = 20000) -> str:
        return "\n".join(self.lines)[-last:]

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"scripts/run ended:\n{self.output()}"
            try:
                if (requests.get(f"http://127.0.0.1:{self.web_port}/healthz", timeout=2).ok
                        and requests.get(f"{self.gateway}/readyz", timeout=2).ok):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the platform did not start within {START_TIMEOUT} s:\n{self.output()}")

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.api}{path}", headers=self.headers, timeout=30, **kwargs)

    def service(self, name: str) -> dict:
        answer = self.call("GET", f"/services/local/{name}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def events(self, name: str) -> list[dict]:
        answer = self.call("GET", f"/services/local/{name}/events", params={"PageSize": 100})
        assert answer.status_code == 200, answer.text
        return answer.json()["Events"]

    def wait_for_status(self, name: str, statuses: set[str], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            service = self.service(name)
            if service["Status"] in statuses:
                return service
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} is {service['Status']} ({service.get('Reason')}: "
                                     f"{service.get('Message')}), not {statuses}, after {timeout:g} s; events: "
                                     f"{json.dumps(self.events(name))[-4000:]}\n{self.logs(name)}")
            time.sleep(1)

    def logs(self, name: str) -> str:
        answer = self.call("GET", f"/services/local/{name}/logs", params={"PageSize": 60})
        return "\n".join(answer.json().get("Logs", [])) if answer.ok else answer.text

    def token(self, name: str) -> str:
        return self.call("GET", f"/services/local/{name}/endpoints").json()["AccessToken"]

    def stop(self) -> None:
        stop_platform(self.proc, self.var_dir, grace=60)


@pytest.fixture(scope="session")
def own_database():
    """A database of the platform's own on the session's PostgreSQL: `make run` migrates it from scratch."""
    with scratch_database("ferry_llm") as url:
        yield url


@pytest.fixture(scope="session")
def platform(tmp_path_factory, own_database, engine_python, models_root):
    """One platform for the whole group (each engine start costs a minute of CPU and 3 GB): the modules share
    it and the `chat` service, and deploy services of their own under other names."""
    running = Platform(tmp_path_factory.mktemp("llm-platform") / "var", own_database,
                       FERRY_VLLM_PYTHON=engine_python, FERRY_FILE_SOURCE_ROOTS=str(models_root))
    yield running
    running.stop()


SERVICE = "chat"


def chat_file(model_dir, **extra) -> dict:
    """The shared service: one engine, scaled on its waiting queue (the autoscaler loop measures it) between
    1 and 1, so nothing the tests do moves its instance."""
    return {"name": SERVICE, "processor": "vllm", "model_path": model_dir.as_uri() + "/",
            "processor_params": ["--max-model-len=512"], "metadata": {"instance": 1, "cpu": 2, "memory": 6000},
            "autoscaler": {"min": 1, "max": 1, "scaleStrategies": [{"metricName": "llm[waiting]", "threshold": 4}]},
            **extra}


def wait_routed(platform: Platform, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while requests.get(f"{platform.gateway}/api/v1/servicediscovery/upstreams/{name}", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, f"the gateway did not route {name}"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def chat(platform, tiny_model) -> str:
    """The shared service's token, once it is Running and the gateway routes it."""
    created = platform.call("POST", "/services", json=chat_file(tiny_model))
    assert created.status_code in (200, 202), created.text
    platform.wait_for_status(SERVICE, {"Running"}, ENGINE_TIMEOUT)
    wait_routed(platform, SERVICE)
    return platform.token(SERVICE)


def engine_still_running(port: int, within: float = 2.0) -> bool:
    """Whether the engine shows a request running within `within` seconds (its gauges are updated as it steps,
    a moment after the fact): called once a first chunk arrived, it tells a stream relayed as the engine
    generates (still running, for seconds more) from one held back until the engine had finished (nothing
    runs any more, whatever the wait)."""
    deadline = time.monotonic() + within
    while True:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        if parse_metrics(text).running >= 1:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def metric(text: str, name: str) -> list[float]:
    """The values of one Prometheus metric (every label set) in /metrics text."""
    return [float(match[1]) for match in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)]


def engine_port(platform: Platform, name: str) -> int:
    answer = platform.call("GET", f"/services/local/{name}/instances")
    (instance,) = [i for i in answer.json()["Instances"] if i["Status"] == "Running"]
    return instance["InstancePort"]


def pytest_report_header(config):
    return f"llm: engine from {'FERRY_VLLM_PYTHON' if os.environ.get('FERRY_VLLM_PYTHON') else 'an install'}" \
        + ("" if sys.platform.startswith("linux") else " (not Linux: the vllm tests are refused)")
