"""The control plane's background processes for end-to-end tests, started as `make run` starts them: a Celery
worker and the autoscaler loop, on the harness's Redis and the test database. And a load generator for the
gateway that counts every answer and every connection error."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from tests.agent.kit import REPO


def start_worker(local_cluster, log_dir: Path, name: str = "e2e") -> subprocess.Popen:
    """A real Celery worker: it runs deployer.activate_service and the reconciles that the agent and the
    autoscaler enqueue. The environment carries this process's secrets (routes carry decrypted tokens)."""
    return _start(local_cluster, log_dir / "worker.log",
                  [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--without-gossip",
                   "--without-mingle", "--without-heartbeat", "-n", f"{name}-{os.getpid()}@%h", "--loglevel", "INFO"])


def start_autoscaler(local_cluster, log_dir: Path) -> subprocess.Popen:
    """`manage.py runautoscaler`: a decision every 2 s from the gateway's metrics in Redis."""
    return _start(local_cluster, log_dir / "autoscaler.log", [sys.executable, "manage.py", "runautoscaler"])


def _start(local_cluster, log: Path, argv: list[str]) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=REPO, env=local_cluster.env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


class Load:
    """Keep-alive POSTs from `threads` connections until stopped; each thread waits `pause` seconds between
    requests (0: as fast as answers come). Counts statuses and connection errors; a failed connection is
    reopened, so one error does not end the load."""

    def __init__(self, port: int, path: str, *, body: bytes, headers: dict, threads: int, pause: float = 0.0):
        self.port, self.path, self.body, self.headers, self.pause = port, path, body, headers, pause
        self.statuses: Counter = Counter()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def total(self) -> int:
        with self._lock:
            return sum(self.statuses.values()) + len(self.errors)

    def _run(self) -> None:
        connection = None
        while not self._stop.is_set():
            try:
                connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                connection.request("POST", self.path, body=self.body, headers=self.headers)
                response = connection.getresponse()
                response.read()
                with self._lock:
                    self.statuses[response.status] += 1
            except (OSError, http.client.HTTPException) as error:
                with self._lock:
                    self.errors.append(f"{type(error).__name__}: {error}")
                connection.close()
                connection = None
            if self.pause:
                self._stop.wait(self.pause)
        if connection is not None:
            connection.close()

