"""The control plane's background processes for end-to-end tests, started as `make run` starts them: a Celery
worker and the autoscaler loop, on the harness's Redis and the test database. And a load generator for the
gateway that counts every answer and every connection error."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.agent.kit import REPO


def start_worker(local_cluster, log_dir: Path, name: str = "e2e") -> subprocess.Popen:
    """A real Celery worker: it runs deployer.activate_service, the reconciles that the agent and the
    autoscaler enqueue, and model fetches (`make run` gives those a worker of their own). The environment
    carries this process's secrets (routes carry decrypted tokens)."""
    return _start(local_cluster, log_dir / "worker.log",
                  [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "celery,fetch",
                   "--pool", "solo", "--without-gossip",
                   "--without-mingle", "--without-heartbeat", "-n", f"{name}-{os.getpid()}@%h", "--loglevel", "INFO"])


def start_autoscaler(local_cluster, log_dir: Path) -> subprocess.Popen:
    """`manage.py runautoscaler`: a decision every 2 s from the gateway's metrics in Redis."""
    return _start(local_cluster, log_dir / "autoscaler.log", [sys.executable, "manage.py", "runautoscaler"])


def _start(local_cluster, log: Path, argv: list[str]) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=REPO, env=local_cluster.env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


@dataclass(frozen=True)
class Answer:
    sent: float  # time.monotonic() before the request was written
    done: float  # after its answer was read
    status: int
    version: int | None  # the ferry-version header


@dataclass
class LoadGenerator:
    """`threads` keep-alive connections posting to the gateway until stopped, each waiting `pause` seconds
    between requests (0: back to back). Every answer is recorded, and every connection error or timeout (the
    connection is then reopened, so one error does not end the load)."""

    port: int
    path: str
    headers: dict
    body: bytes
    threads: int = 4
    pause: float = 0.0
    answers: list[Answer] = field(default_factory=list)  # in the order they finished
    errors: list[tuple[float, str]] = field(default_factory=list)  # (time, what)
    stopping: threading.Event = field(default_factory=threading.Event)
    workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> LoadGenerator:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.workers = [threading.Thread(target=self._run, name=f"load-{n}", daemon=True)
                        for n in range(self.threads)]
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.join(30)

    def statuses(self) -> Counter:
        return Counter(answer.status for answer in self.answers[:])

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            while not self.stopping.is_set():
                sent = time.monotonic()
                try:
                    connection.request("POST", self.path, body=self.body, headers=self.headers)
                    response = connection.getresponse()
                    response.read()
                except Exception as exc:  # noqa: BLE001 -- every failure is counted and fails the test
                    self.errors.append((sent, repr(exc)))
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    time.sleep(0.01)
                    continue
                version = response.getheader("ferry-version")
                self.answers.append(Answer(sent, time.monotonic(), response.status,
                                           int(version) if version and version.isdigit() else None))
                if response.will_close:
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if self.pause:
                    self.stopping.wait(self.pause)
        finally:
            connection.close()

    def next_window(self, after: float, count: int, timeout: float = 300.0) -> list[Answer]:
        """The first `count` answers to requests sent after `after`, once every request sent before the last
        of them has been answered (each connection has one request in flight)."""
        deadline = time.monotonic() + timeout
        while True:
            later = [answer for answer in self.answers[:] if answer.sent >= after]
            if len(later) >= count + self.threads:
                return sorted(later, key=lambda answer: answer.sent)[:count]
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(later)} answers in {timeout:g} s; errors: {self.errors[-3:]}")
            if not any(worker.is_alive() for worker in self.workers):
                raise AssertionError(f"the load generator stopped; errors: {self.errors[-3:]}")
            time.sleep(0.1)

    def since(self, began: float) -> list[Answer]:
        return [answer for answer in self.answers[:] if answer.sent >= began]
