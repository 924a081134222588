"""The real `ferry` executable against a live test server.

- `ferry` is the console script installed in the venv (`pip install -e .`), run as a subprocess with its own
  config directory and FERRY_ENDPOINT / FERRY_TOKEN pointing at pytest-django's live server as alice.
- Real instances come from the e2e local cluster (a node agent subprocess and model servers). The live server
  runs Celery tasks eagerly, so each write reconciles once on commit in the web thread; after that the agent's
  reports go to a broker nobody consumes. `sweeper` stands in for the worker and beat: a background thread that
  reconciles every service a few times a second while the CLI waits.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection

from processors.demo import IRIS_SAMPLE
from services.models import Service
from services.writes import api_token_create
from tests.agent.kit import wait_for
from tests.api.conftest import make_member
from tests.e2e.conftest import local_cluster  # noqa: F401  (a fixture of these tests)

FERRY = Path(sys.executable).with_name("ferry")
CLI_VARIABLES = ("FERRY_ENDPOINT", "FERRY_TOKEN", "FERRY_ACCESS_KEY_ID", "FERRY_ACCESS_KEY_SECRET", "FERRY_PROFILE",
                 "FERRY_CLUSTER", "FERRY_GATEWAY", "FERRY_CONFIG")
logger = logging.getLogger(__name__)


@dataclass
class Ferry:
    """Runs the installed `ferry` with a private config dir and the given environment."""

    env: dict[str, str]
    tmp_path: Path

    def __call__(self, *args: str, input: str | None = None, timeout: float = 120, **env: str
                 ) -> subprocess.CompletedProcess:
        return subprocess.run([str(FERRY), *args], input=input, capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **env})

    def ok(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        result = self(*args, **kwargs)
        assert result.returncode == 0, (f"ferry {' '.join(args)} exited {result.returncode}:\n"
                                        f"{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str, **kwargs):
        return json.loads(self.ok(*args, "-o", "json", **kwargs).stdout)

    def popen(self, *args: str, **env: str) -> subprocess.Popen:
        # Ctrl-C as a terminal sends it: a suite started in the background by a non-interactive shell inherits
        # SIGINT ignored, and Python then installs no KeyboardInterrupt handler in the CLI it starts.
        return subprocess.Popen([str(FERRY), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**self.env, **env}, preexec_fn=_sigint_as_default)

    def file(self, name: str, content) -> str:
        path = self.tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return str(path)


def _sigint_as_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session", autouse=True)
def ferry_installed():
    if not FERRY.exists():
        pytest.fail(f"the `ferry` console script is not installed next to {sys.executable}: run `pip install -e .`")


@pytest.fixture
def alice(transactional_db):
    return make_member("alice", "team_a")


@pytest.fixture
def alice_token(alice) -> str:
    return api_token_create(user=alice, name="cli")[1]


@pytest.fixture
def ferry(live_server, alice_token, tmp_path) -> Ferry:
    env = {key: value for key, value in os.environ.items() if key not in CLI_VARIABLES}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), HOME=str(tmp_path), COLUMNS="200", NO_COLOR="1",
               TERM="dumb", PYTHONUNBUFFERED="1", FERRY_ENDPOINT=live_server.url, FERRY_TOKEN=alice_token)
    return Ferry(env, tmp_path)


@pytest.fixture(scope="session")
def iris_model(tmp_path_factory) -> Path:
    """An iris classifier for the sklearn processor (the e2e demo models train ONNX too, which takes longer)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("cli-models")
    (folder / "iris").mkdir()
    joblib.dump(LogisticRegression(max_iter=1000).fit(*load_iris(return_X_y=True)), folder / "iris" / "model.joblib")
    (folder / "warm_up.json").write_text(json.dumps([{"instances": [IRIS_SAMPLE]}]))
    return folder


@pytest.fixture
def iris_file(iris_model) -> dict:
    """demo_iris as `make run` deploys it."""
    return {"name": "demo_iris", "processor": "sklearn", "model_path": (iris_model / "iris").as_uri() + "/",
            "warm_up_data_path": (iris_model / "warm_up.json").as_uri(),
            "metadata": {"instance": 1, "cpu": 1, "memory": 512}}


@pytest.fixture
def sweeper(local_cluster):
    """Reconciles every service about four times a second, as a worker consuming the agent's reports would."""
    from deployer.reconcile import reconcile

    stop = threading.Event()

    def loop():
        try:
            while not stop.is_set():
                for pk in list(Service.objects.values_list("pk", flat=True)):
                    try:
                        reconcile(pk)
                    except Exception:  # a transient error is retried by the next pass, as Celery would
                        logger.exception("reconcile(%s) failed in the sweeper", pk)
                stop.wait(0.25)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, name="sweeper", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(30)


def wait_for_output(process: subprocess.Popen, stream: str, needle: str, timeout: float = 30.0) -> str:
    """Reads `stream` of `process` line by line until a line contains `needle`; returns what was read."""
    pipe = getattr(process, stream)
    seen: list[str] = []
    found = threading.Event()

    def read():
        for line in pipe:
            seen.append(line)
            if needle in line:
                found.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not found.wait(timeout):
        process.send_signal(signal.SIGKILL)
        raise AssertionError(f"no line with {needle!r} on {stream} within {timeout:g} s; got:\n{''.join(seen)}")
    return "".join(seen)


def interrupt(process: subprocess.Popen, timeout: float = 15.0) -> tuple[int, str, str]:
    process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Still fails the test, but a CLI left polling would answer later tests' server with errors of its own.
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"the CLI did not end within {timeout:g} s of SIGINT; it printed:\n{stdout}\n{stderr}")
    return process.returncode, stdout, stderr


def eventually(check, timeout: float = 30.0, what: str = "the condition"):
    return wait_for(check, timeout=timeout, what=what)
