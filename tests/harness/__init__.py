"""Ferry's pytest harness: a real PostgreSQL and a real Redis on loopback for the whole test session.

Loaded as a plugin with `-p tests.harness` (pyproject.toml addopts, with `pythonpath = ["."]`) because the
environment must be set before pytest-django runs django.setup() in its `pytest_load_initial_conftests`,
which happens before any conftest.py is imported. Our hook is a wrapper, so it runs before every plain
implementation of that hook, pytest-django's included.

- DATABASE_URL / REDIS_URL already set (a developer's own servers): used as they are.
- Otherwise a throwaway server of each is started on a free loopback port, in the background: they come up
  while Django is set up and tests are collected, and the first test waits until both answer.
- CELERY_TASK_ALWAYS_EAGER defaults to true (tasks run inline) and FERRY_VAR_DIR to a temp dir, so tests
  never touch the repository's var/.
- Servers are stopped at the end of the session, on Ctrl-C and on SIGTERM; if pytest dies outright the kernel
  signals them (parent-death signal), so no server outlives the run.
"""

from __future__ import annotations

import atexit
import base64
import os
import re
import secrets
import shutil
import signal
import tempfile
import time

import pytest

from .postgres import PostgresServer
from .process import HarnessError, make_tempdir
from .redis import RedisServer


class Harness:
    def __init__(self) -> None:
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.var_dir: str | None = None
        self.waited: float | None = None

    def start(self) -> None:
        os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
        # Tests keep their models in temporary directories and serve them from loopback; tests/security refuses
        # both by overriding these settings.
        os.environ.setdefault("FERRY_FILE_SOURCE_ROOTS", os.path.realpath(tempfile.gettempdir()))
        os.environ.setdefault("FERRY_FETCH_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
        # One installation shares one route key (contracts/sealing.py): workers and gateways the tests start with
        # var dirs of their own still seal and open the same tokens.
        os.environ.setdefault("FERRY_ROUTE_KEY", base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        if not os.environ.get("FERRY_VAR_DIR"):
            self.var_dir = str(make_tempdir("ferry-test-var-"))
            os.environ["FERRY_VAR_DIR"] = self.var_dir
        if not os.environ.get("DATABASE_URL"):
            self.postgres = PostgresServer()
            self.postgres.start()
            os.environ["DATABASE_URL"] = self.postgres.url
        if not os.environ.get("REDIS_URL"):
            self.redis = RedisServer()
            self.redis.start()
            os.environ["REDIS_URL"] = self.redis.url

    def wait_ready(self) -> None:
        began = time.monotonic()
        for server in (self.redis, self.postgres):  # Redis first: its figure is then closer to its startup time
            if server is not None and server.ready_after is None:
                server.wait_ready()
        self.waited = time.monotonic() - began

    def stop(self) -> None:
        for server in (self.redis, self.postgres):
            if server is not None:
                server.stop()
        if self.var_dir:
            shutil.rmtree(self.var_dir, ignore_errors=True)


harness = Harness()


def _sigterm(signum, frame):  # noqa: ARG001
    # pytest cleans up on KeyboardInterrupt but not on SIGTERM: make the two the same.
    raise KeyboardInterrupt("SIGTERM")


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser, args):  # noqa: ARG001
    ns = early_config.known_args_namespace
    if not (getattr(ns, "help", False) or getattr(ns, "version", False)):
        early_config.add_cleanup(harness.stop)
        atexit.register(harness.stop)  # in case pytest fails before running its cleanups
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _sigterm)
        try:
            harness.start()
        except HarnessError as exc:
            raise pytest.UsageError(f"ferry test harness: {exc}") from exc
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    try:
        harness.wait_ready()
    except HarnessError as exc:
        pytest.exit(f"ferry test harness: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)  # Redis URLs have a password and no user


def pytest_report_header(config: pytest.Config) -> list[str]:  # noqa: ARG001
    pg, rd = harness.postgres, harness.redis
    db = f"PostgreSQL {pg.version()} (throwaway, {pg.bindir})" if pg else "DATABASE_URL from the environment"
    cache = f"Redis (throwaway, {rd.binary})" if rd else "REDIS_URL from the environment"
    return [
        f"ferry harness: {db}: {_redact(os.environ.get('DATABASE_URL', ''))}",
        f"ferry harness: {cache}: {_redact(os.environ.get('REDIS_URL', ''))}",
    ]


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:  # noqa: ARG001
    servers = [server for server in (harness.postgres, harness.redis) if server and server.ready_after is not None]
    if config.option.verbose < 0 or harness.waited is None or not servers:
        return
    # Servers start in the background while Django is set up and tests are collected: what costs time is
    # only what the first test had to wait.
    started = max(server.ready_after for server in servers)
    terminalreporter.write_line(
        f"ferry harness: servers started {started:.2f} s before the tests began, "
        f"which waited {harness.waited:.2f} s for them"
    )
