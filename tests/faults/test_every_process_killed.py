"""Every process of `make run` killed with SIGKILL in turn, under load through the gateway.

The real `make run` (scripts/run: migrate, bootstrap, then scripts/supervise.py on the repository's Procfile)
runs on ports of its own, with its embedded Redis (so killing Redis hurts no other test), a database of its own
on the session's PostgreSQL and a var dir in tmp_path. Once its `demo` line has deployed demo_iris,
bench/faults/run.py kills each of instance, agent, gateway, worker, beat, autoscaler, web and redis while
clients post predictions through the gateway, and reports per fault (--json). What must hold:
- no single crash stops serving: not one request fails, but for a killed instance or gateway, which may cost
  at most the requests in flight on it (one per client);
- every component comes back by itself: the supervisor says it restarts it, and the instance comes back under
  its name with a new process (the node agent restarts it);
- the control plane converges afterwards (a scale round trip through the API, within the bench's timeout),
  and no healthy instance is restarted: every demo_iris model server that was not killed keeps its pid.

The figures are printed (the bench's table) for the CI log; timings are never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from config.embedded_redis import embedded_redis_url
from tests.harness.process import free_port, scratch_database, stop_platform

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "faults" / "run.py"
SERVICE = "demo_iris"
CLIENTS = 4
FAULTS = ("instance", "agent", "gateway", "worker", "beat", "autoscaler", "web", "redis")
# A killed instance or gateway loses the requests it held (one per keep-alive client at most); every other
# process is off the request path.
MAY_COST_IN_FLIGHT = {"instance", "gateway"}
FAULT_TIMEOUT = 90  # seconds the bench allows one fault until the control plane is whole again
DEMO_TIMEOUT = 240  # migrate, bootstrap, train and deploy the demo on a busy 2-core machine
BENCH_TIMEOUT = 420


def load_bench():
    spec = importlib.util.spec_from_file_location("faults_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def own_database():
    """A database of this test's own on the session's PostgreSQL: `make run` migrates it from scratch, and
    nothing it writes meets the other tests' rows."""
    with scratch_database("ferry_faults") as url:
        yield url


class MakeRun:
    """scripts/run as a child of the test, on free ports; its output is collected line by line."""

    def __init__(self, var_dir: Path, database_url: str):
        self.var_dir = var_dir
        self.redis_port, self.web_port, self.gateway_port = free_port(), free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.web_port}"
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        env = {key: value for key, value in os.environ.items()
               # The harness's eager Celery and shared Redis are for in-process tests: `make run` has a worker
               # and its embedded Redis.
               if key not in ("CELERY_TASK_ALWAYS_EAGER", "REDIS_URL", "CELERY_BROKER_URL")}
        self.env = {**env, "FERRY_VAR_DIR": str(var_dir), "DATABASE_URL": database_url,
                    "FERRY_REDIS_PORT": str(self.redis_port), "FERRY_WEB_PORT": str(self.web_port),
                    "FERRY_GATEWAY_PORT": str(self.gateway_port), "FERRY_GATEWAY_URL": self.gateway,
                    # Models of its own, as `make run`'s (the repository's models/): the harness's root, the whole
                    # temp dir, would be mounted over the sandbox's private /tmp, with pytest's 0700 dirs in it.
                    "FERRY_FILE_SOURCE_ROOTS": str(var_dir.parent / "models"), "NO_COLOR": "1"}
        self.lines: list[str] = []
        # scripts/run execs the supervisor: this pid is the supervisor's.
        self.proc = subprocess.Popen([str(ROOT / "scripts" / "run")], cwd=ROOT, env=self.env, text=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[:]:
                if match := re.search(pattern, line):
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r} within {timeout:g} s; the output's end:\n"
                             f"{self.output()[-20000:]}")

    def stop(self) -> None:
        stop_platform(self.proc, self.var_dir, grace=30)


@pytest.fixture
def make_run(tmp_path, own_database):
    platform = MakeRun(tmp_path / "var", own_database)
    yield platform
    platform.stop()


def run_bench(platform: MakeRun) -> tuple[list[dict], str]:
    argv = [sys.executable, str(BENCH), "--json", "--service", SERVICE, "--clients", str(CLIENTS),
            "--settle", "1", "--timeout", str(FAULT_TIMEOUT), "--api", platform.api, "--gateway", platform.gateway,
            "--supervisor", str(platform.proc.pid), "--only", *FAULTS]
    env = {**platform.env, "REDIS_URL": embedded_redis_url(platform.env)}  # with var/redis-password
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=BENCH_TIMEOUT)
    print(done.stderr)  # its progress, for the log
    rows = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else []
    return rows, f"bench exit code {done.returncode}; its stderr:\n{done.stderr[-5000:]}"


def restarted_by_supervisor(lines: list[str], name: str, pid: int) -> bool:
    """The supervisor started `pid` as `name` (the bench killed its child, not a stray), then said it exited by
    SIGKILL and is restarted, then started it again."""
    expected = [rf"system +\| {name} started \(pid {pid}\)$",
                rf"system +\| {name} exited \(signal 9, SIGKILL\); restarting in",
                rf"system +\| {name} started \(pid \d+\)$"]
    for line in lines:
        if expected and re.search(expected[0], line):
            expected.pop(0)
    return not expected


def test_no_single_process_killed_stops_serving_and_each_comes_back(make_run):
    make_run.wait_for(r"system +\| demo exited", timeout=DEMO_TIMEOUT)
    assert "The demo services are Running" in make_run.output(), make_run.output()[-20000:]

    rows, bench_log = run_bench(make_run)

    bench = load_bench()
    print(bench.table([bench.Row(**row) for row in rows], FAULT_TIMEOUT))
    print("\n".join(line for line in make_run.lines if re.search(r"system +\| ", line)))  # its kills and restarts
    assert [row["fault"] for row in rows] == list(FAULTS), bench_log
    for row in rows:
        fault = row["fault"]
        assert row["control"] is not None, f"{fault}: the control plane was not whole within {FAULT_TIMEOUT} s"
        if fault in MAY_COST_IN_FLIGHT:
            assert row["failed"] <= CLIENTS, \
                f"{fault}: {row['failed']} requests failed, more than those in flight: {row['failures']}"
        else:
            assert row["failed"] == 0, \
                f"{fault}: {row['failed']} requests failed; it is not on the request path: {row['failures']}"
        before, after = row["instances_before"], row["instances_after"]
        if fault == "instance":
            killed = [name for name, pid in before.items() if pid == row["pid"]]
            assert killed and after.get(killed[0]) not in (None, row["pid"]), f"the instance did not come back: {row}"
        else:
            assert restarted_by_supervisor(make_run.lines, fault, row["pid"]), f"{fault} was not restarted: {row}"
        untouched = {name: pid for name, pid in before.items() if pid != row["pid"]}
        assert {name: after.get(name) for name in untouched} == untouched, f"{fault}: a healthy instance restarted"
    # Nor between two faults: each one starts with the instances the previous one ended with.
    for previous, row in zip(rows, rows[1:]):
        assert row["instances_before"] == previous["instances_after"], f"an instance restarted before {row['fault']}"
