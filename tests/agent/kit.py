"""Helpers for driving a real node agent: the commands instances run, polling, and the local cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
from django.db import connection

from deployer.models import LocalInstance

REPO = Path(__file__).resolve().parents[2]
MARK_VAR_DIR = "FERRY_AGENT_VAR_DIR"
MARK_INSTANCE = "FERRY_INSTANCE"
PY = sys.executable

HTTP_SERVER = [PY, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
# An HTTP server that ignores SIGTERM: only SIGKILL stops it.
STUBBORN_SERVER = [
    PY, "-c",
    "import runpy, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "sys.argv = ['http.server', sys.argv[1], '--bind', '127.0.0.1']; "
    "runpy.run_module('http.server', run_name='__main__')",
    "{port}",
]
CRASHES_AT_ONCE = [PY, "-c", "import sys; print('crashing on purpose', flush=True); sys.exit(1)"]
NEVER_READY = [PY, "-c", "import time; time.sleep(600)"]
# Always says what a server says when another program took its port first.
PORT_ALWAYS_TAKEN = [PY, "-c", "import sys; sys.exit('OSError: [Errno 98] Address already in use')"]
# Answers GET / with 200 while the file named by argv[2] exists, 503 after.
HEALTHY_WHILE_FILE_EXISTS = [
    PY, "-c",
    "import http.server, os, sys\n"
    "class Handler(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200 if os.path.exists(sys.argv[2]) else 503)\n"
    "        self.end_headers()\n"
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()",
    "{port}",
]


def command_of(pid: int) -> int:
    """The command's own process: under the sandbox the agent's pid is bubblewrap's outer process, and the
    command runs below bwrap's init (resource limits are applied there)."""
    process = psutil.Process(pid)
    if process.name() != "bwrap":
        return pid
    for child in process.children(recursive=True):
        if child.name() != "bwrap":
            return child.pid
    raise AssertionError(f"nothing runs under bwrap {pid}")


def data_limit(pid: int) -> tuple[int, int]:
    """RLIMIT_DATA (soft, hard) of a process, read from /proc/<pid>/limits (readable without CAP_SYS_RESOURCE,
    which psutil's prlimit needs for a process of another user); -1 when unlimited."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max data size"):
            soft, hard = line.split()[3:5]
            return tuple(-1 if value == "unlimited" else int(value) for value in (soft, hard))
    raise AssertionError(f"no data size limit in /proc/{pid}/limits")


def wait_for(condition, timeout: float = 15.0, what: str = "the condition"):
    """Polls until `condition()` is truthy and returns it; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what} in vain")
        time.sleep(0.05)


def http_status(port: int, path: str = "/") -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_database_url() -> str:
    """DATABASE_URL naming the database pytest-django made for this run (test_<name>), not the original."""
    url = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"]))


class Agent:
    """One `manage.py runagent` subprocess; its output goes to a file, shown when a test fails."""

    def __init__(self, popen: subprocess.Popen, output_path: Path):
        self.popen = popen
        self.output_path = output_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def send(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.popen.wait(timeout)

    def running(self) -> bool:
        return self.popen.poll() is None


class LocalCluster:
    """The var dir, the agents started on it, the rows, and the processes carrying its mark."""

    def __init__(self, tmp_path: Path, service):
        # pytest makes its directories 0700; instances run as users of their own and read the files tests put
        # in the session's directory (this test's, and shared ones such as the demo models).
        for directory in [tmp_path.parent, *tmp_path.parent.iterdir()]:
            if directory.is_dir() and not directory.is_symlink():
                directory.chmod(directory.stat().st_mode | 0o055)
        self.var_dir = (tmp_path / "var").resolve()
        self.var_dir.mkdir()
        self.tmp_path = tmp_path
        self.service = service
        self.agents: list[Agent] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, FERRY_VAR_DIR=str(self.var_dir), PYTHONUNBUFFERED="1")
        env["DATABASE_URL"] = test_database_url()
        # One installation shares one secret (make run keeps it in var/): the agent decrypts service tokens.
        from django.conf import settings

        env["DJANGO_SECRET_KEY"] = settings.SECRET_KEY
        env["FERRY_ENCRYPTION_KEY"] = settings.FERRY_ENCRYPTION_KEY
        # The agent enqueues reconciles; inline they would run inside the agent, which is not what we test.
        env["CELERY_TASK_ALWAYS_EAGER"] = "false"
        # Files the tests' commands name lie in the test's directory: the sandbox shows them as it shows
        # model sources an admin allows (its var/ stays hidden).
        env["FERRY_FILE_SOURCE_ROOTS"] = str(self.tmp_path.parent)
        env.update(extra)
        return env

    def start_agent(self, *args: str, poll_interval: float = 0.2, env: dict | None = None) -> Agent:
        output_path = self.tmp_path / f"agent-{len(self.agents)}.log"
        with open(output_path, "wb") as output:
            popen = subprocess.Popen(
                [PY, "manage.py", "runagent", "--poll-interval", str(poll_interval), *args],
                cwd=REPO, env=env or self.env(), stdout=output, stderr=subprocess.STDOUT,
            )
        agent = Agent(popen, output_path)
        self.agents.append(agent)
        return agent

    def run_once(self) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "manage.py", "runagent", "--once"], cwd=REPO, env=self.env(),
                              capture_output=True, text=True, timeout=60)

    def add(self, name: str, argv: list[str], **launch) -> LocalInstance:
        launch = {"argv": argv, "health_path": "/", "grace_period_seconds": 2, "ready_timeout_seconds": 20} | launch
        return LocalInstance.objects.create(service=self.service, version_number=1, name=name, launch=launch)

    @staticmethod
    def row(name: str) -> LocalInstance:
        return LocalInstance.objects.get(name=name)

    def wait_for_row(self, name: str, condition, timeout: float = 15.0, what: str = "") -> LocalInstance:
        def check():
            row = self.row(name)
            return row if condition(row) else None

        try:
            return wait_for(check, timeout, what or f"a change of instance {name}")
        except AssertionError as exc:
            row = self.row(name)
            raise AssertionError(f"{exc}; the row: state={row.state} ready={row.ready} pid={row.pid} "
                                 f"restart_count={row.restart_count} reason={row.last_exit_reason!r}\n"
                                 f"agent output:\n{self.agents[-1].output() if self.agents else ''}") from None

    def wait_running(self, name: str, timeout: float = 15.0) -> LocalInstance:
        return self.wait_for_row(name, lambda row: row.state == "Running" and row.ready and row.pid, timeout,
                                 f"instance {name} to be Running and ready")

    def log(self, name: str) -> str:
        path = self.var_dir / "instances" / name / "instance.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def processes(self, name: str | None = None) -> list[psutil.Process]:
        """Live processes marked with this var dir (and instance name): what the agent started. Under the
        sandbox that is bubblewrap's outer process (the pid the agent records), not bwrap's init or the
        command it runs inside (their parent is bwrap); children of the command are counted."""
        found = []
        for process in psutil.process_iter():
            try:
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
                parent = process.parent()
                if parent is not None and parent.name() == "bwrap":
                    continue
                env = process.environ()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
                continue
            if env.get(MARK_VAR_DIR) == str(self.var_dir) and (name is None or env.get(MARK_INSTANCE) == name):
                found.append(process)
        return found

    def clean_up(self) -> list[str]:
        """Stops every agent, then kills whatever is still marked; returns what had been left behind."""
        for agent in self.agents:
            if agent.running():
                agent.send(signal.SIGTERM)
        for agent in self.agents:
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.popen.kill()
                agent.wait(5)
        leftovers = self.processes()
        for process in leftovers:
            try:
                os.killpg(os.getpgid(process.pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return [f"pid {process.pid}" for process in leftovers]
