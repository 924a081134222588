"""Fixtures for the processor tests: demo models trained once per session, and
model servers started as the node agent starts them (registry.local_launch)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from processors.demo import demo_service_files, train_demo_models
from processors.fetch import fetch_model
from processors.registry import local_launch
from tests.processors.helpers import ServerProcess


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> dict[str, Path]:
    return train_demo_models(tmp_path_factory.mktemp("demo-models"))


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    """start_server(service_file, model_dir=None, **launch_options) -> a started ServerProcess
    (not yet waited for); every server is stopped at the end of the session."""
    started: list[ServerProcess] = []

    def start(service_file: dict, model_dir: str | None = None, **launch_options) -> ServerProcess:
        launch = local_launch(
            service_file, service_name=service_file["name"], model_dir=model_dir, python=sys.executable,
            **launch_options,
        )
        log_path = tmp_path_factory.mktemp("server-logs") / f"{service_file['name']}.log"
        server = ServerProcess(launch, log_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def demo_servers(demo_models, start_server, tmp_path_factory) -> dict[str, ServerProcess]:
    """demo_iris and demo_digits, their models fetched from file:// URLs as the agent would.
    Both start at once and are waited for together."""
    cache_dir = tmp_path_factory.mktemp("model-cache")
    servers = {}
    for service_file in demo_service_files(demo_models):
        model_dir = fetch_model(service_file["model_path"], cache_dir=cache_dir)
        servers[service_file["name"]] = start_server(service_file, str(model_dir))
    for server in servers.values():
        server.wait_ready()
    return servers
