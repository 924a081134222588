"""What the streaming tests share: the service file of the gated SSE upstream (sse_server.py), its gate and a
gateway of the test's own (fixtures: import them into the test module), and a reader that collects a process's
output as it arrives."""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from pathlib import Path

import pytest
from django.test import override_settings

from tests.gateway.conftest import start_gateway

SERVER = Path(__file__).with_name("sse_server.py")
TOKENS = ["Hello", " from", " a", " streaming", " engine", "."]


def sse_service(name: str, gate: Path) -> dict:
    """A custom-container service running sse_server.py, its tokens held until `gate`/<i> exists."""
    script = f"exec {shlex.quote(sys.executable)} {shlex.quote(str(SERVER))} {shlex.quote(str(gate))}"
    return {"name": name, "processor": "custom", "metadata": {"instance": 1},
            "containers": [{"image": "none", "script": script, "port": 8000}]}


@pytest.fixture
def gateway(tmp_path):
    """A gateway of the test's own, the one the platform sends users to (FERRY_GATEWAY_URL)."""
    running = start_gateway(tmp_path)
    with override_settings(FERRY_GATEWAY_URL=running.url):
        yield running
    running.stop()


@pytest.fixture
def gate(tmp_path) -> Path:
    """The folder sse_server.py watches: its token i is sent once `gate`/<i> exists (release)."""
    folder = tmp_path / "gate"
    folder.mkdir()
    return folder


def release(gate: Path, *indexes: int) -> None:
    for index in indexes:
        (gate / str(index)).touch()


class Collected:
    """Everything a pipe has delivered so far, read in a thread as bytes arrive (no line buffering)."""

    def __init__(self, pipe):
        self.data = b""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(pipe.fileno(),), daemon=True)
        self._thread.start()

    def _read(self, fd: int) -> None:
        while chunk := os.read(fd, 65536):
            with self._lock:
                self.data += chunk

    def text(self) -> str:
        with self._lock:
            return self.data.decode(errors="replace")

    def wait_for(self, needle: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} did not arrive within {timeout:g} s; got {self.text()!r}")
            time.sleep(0.02)
        return self.text()

    def join(self, timeout: float = 15.0) -> str:
        self._thread.join(timeout)
        return self.text()
