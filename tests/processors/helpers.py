"""Running real model-server processes in tests."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from processors.demo import demo_service_files
from processors.fetch import fetch_model
from processors.registry import LocalLaunch, local_launch

READY_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A process started from a LocalLaunch, as the node agent would start it."""

    def __init__(self, launch: LocalLaunch, log_path: Path):
        self.port = free_port()
        self.health_path = launch.health_path
        self.log_path = log_path
        argv = [arg.replace("{port}", str(self.port)) for arg in launch.argv]
        env = {**os.environ, **{name: value.replace("{port}", str(self.port)) for name, value in launch.env.items()}}
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(argv, cwd=launch.cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def is_ready(self) -> bool:
        try:
            return requests.get(self.url(self.health_path), timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> "ServerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            if self.is_ready():
                return self
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url(path), timeout=30, **kwargs)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url(path), timeout=30)


@contextlib.contextmanager
def demo_iris_server(demo_models, tmp_path_factory, token: str):
    """demo_iris's model server as the node agent starts it, the service token in its environment (never on its
    command line), ready; stopped on exit."""
    service_file = next(f for f in demo_service_files(demo_models) if f["name"] == "demo_iris")
    model_dir = fetch_model(service_file["model_path"], cache_dir=tmp_path_factory.mktemp("model-cache"))
    launch = local_launch(service_file, service_name="demo_iris", model_dir=str(model_dir), python=sys.executable)
    launch = dataclasses.replace(launch, env={**launch.env, "FERRY_SERVICE_TOKEN": token})
    server = ServerProcess(launch, tmp_path_factory.mktemp("logs") / "demo_iris.log")
    try:
        yield server.wait_ready()
    finally:
        server.stop()
