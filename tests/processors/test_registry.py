"""The processor registry: local commands, what cannot run here and why, Kubernetes data."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from processors.codes import KNOWN_PROCESSORS
from processors.registry import (
    PROCESSORS,
    ProcessorUnavailable,
    inference_protocol,
    kubernetes_image,
    local_launch,
    local_pool_launch,
    metrics_path,
    urls_to_fetch,
)
from services.servicefile import validate_service_file
from tests.processors.helpers import ServerProcess


def launch(service_file: dict, model_dir: str | None = "/models/m", **options):
    return local_launch(service_file, service_name="svc", model_dir=model_dir, python="/usr/bin/python3", **options)


@pytest.fixture
def empty_path(tmp_path, monkeypatch):
    """A PATH on which no serving runtime is installed."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("FERRY_TRITONSERVER", raising=False)
    return tmp_path


def test_it_runs_the_builtin_processors_with_ferrys_model_server():
    service_file = validate_service_file({
        "name": "svc", "processor": "sklearn", "model_path": "s3://b/m/", "model_entry": "model.pkl",
        "warm_up_data_path": "file:///data/warm.json", "metadata": {"rpc": {"worker_threads": 3}},
    })

    result = launch(service_file)

    assert result.argv[:3] == ["/usr/bin/python3", "-m", "processors.modelserver"]
    arguments = dict(zip(result.argv[3::2], result.argv[4::2]))
    assert arguments == {
        "--model-name": "svc", "--processor": "sklearn", "--http-port": "{port}", "--host": "127.0.0.1",
        "--model-dir": "/models/m", "--model-entry": "model.pkl", "--warmup-file": "/data/warm.json",
        "--worker-threads": "3", "--grace-period": "30",
    }
    assert result.health_path == "/v2/health/ready"


def test_it_passes_a_fetched_warm_up_file_and_the_python_handler():
    service_file = {"name": "svc", "processor": "python", "processor_entry": "app.py",
                    "processor_path": "oss://b/code/", "warm_up_data_path": "oss://b/warm.json"}

    result = launch(service_file, model_dir=None, processor_dir="/cache/code", warm_up_path="/cache/warm")

    assert result.argv[result.argv.index("--handler") + 1] == "/cache/code/app.py"
    assert result.argv[result.argv.index("--warmup-file") + 1] == "/cache/warm"
    assert urls_to_fetch(service_file) == {"processor_path": "oss://b/code/", "warm_up_data_path": "oss://b/warm.json"}


def test_it_refuses_a_remote_warm_up_file_that_was_not_fetched():
    with pytest.raises(ValueError, match="fetch it"):
        launch({"name": "svc", "processor": "onnx", "warm_up_data_path": "https://example.org/w.json"})


def test_it_says_to_install_pytriton_when_tritonserver_is_missing(empty_path):
    with pytest.raises(ProcessorUnavailable) as raised:
        launch({"name": "svc", "processor": "triton", "model_path": "/models/m"})

    assert raised.value.reason == "ProcessorNotInstalled"
    assert "pip install nvidia-pytriton" in str(raised.value)


def test_it_runs_tritonserver_when_one_is_on_the_path(empty_path):
    binary = empty_path / "tritonserver"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)

    result = launch({"name": "svc", "processor": "triton", "processor_params": ["--log-verbose=1"]})

    assert result.argv == [str(binary), "--http-port={port}", "--allow-grpc=false", "--allow-metrics=false",
                           "--model-repository=/models/m", "--log-verbose=1"]
    assert result.health_path == "/v2/health/ready"


@pytest.mark.parametrize(
    "processor, advice",
    [("tfserving", "tensorflow_model_server"), ("torchserve", "pip install torchserve"), ("mlserver", "pip install mlserver")],
)
def test_it_says_what_to_install_for_external_runtimes(empty_path, processor, advice):
    with pytest.raises(ProcessorUnavailable) as raised:
        launch({"name": "svc", "processor": processor})

    assert raised.value.reason == "ProcessorNotInstalled"
    assert advice in str(raised.value)


def test_it_explains_that_pmml_and_unknown_processors_do_not_run_here():
    with pytest.raises(ProcessorUnavailable) as pmml:
        launch({"name": "svc", "processor": "pmml"})
    with pytest.raises(ProcessorUnavailable) as unknown:
        launch({"name": "svc", "processor": "caffe"})

    assert pmml.value.reason == "ProcessorNotSupportedLocally"
    assert "onnx" in str(pmml.value)
    assert unknown.value.reason == "UnknownProcessor"
    assert "sklearn" in str(unknown.value)


def test_it_runs_a_pool_of_a_builtin_processor_with_no_model_on_its_command_line():
    service_file = validate_service_file({
        "name": "mesh", "processor": "lightgbm", "model_path": "s3://b/m/",
        "metadata": {"rpc": {"worker_threads": 3}, "eas": {"termination_grace_period": 12}},
    })

    result = local_pool_launch(service_file, service_name="mesh", python="/usr/bin/python3")

    assert result.argv[:4] == ["/usr/bin/python3", "-m", "processors.modelserver", "--pool"]
    arguments = dict(zip(result.argv[4::2], result.argv[5::2]))
    assert arguments == {
        "--model-name": "mesh", "--processor": "lightgbm", "--http-port": "{port}", "--host": "127.0.0.1",
        "--worker-threads": "3", "--grace-period": "12",
    }
    assert result.health_path == "/v2/health/ready"
    assert result.grace_period_seconds == 12
    assert result.cwd == launch({"name": "svc", "processor": "sklearn"}).cwd
    assert result.env["PYTHONPATH"].split(":")[0] == result.cwd


@pytest.mark.parametrize("processor", ["triton", "vllm", "custom", "tfserving"])
def test_only_the_builtin_processors_run_as_a_pool(processor):
    with pytest.raises(ProcessorUnavailable) as raised:
        local_pool_launch({"name": "mesh", "processor": processor}, service_name="mesh", python="/usr/bin/python3")

    assert raised.value.reason == "ProcessorCannotPool"
    assert f"the {processor} processor cannot serve a model pool" in str(raised.value)
    assert "sklearn" in str(raised.value)


def test_it_runs_a_custom_container_script_with_its_env_and_port():
    service_file = validate_service_file({
        "metadata": {"name": "svc"},
        "containers": [{"image": "python:3.11", "script": "python app.py", "port": 8000,
                        "env": [{"name": "MODE", "value": "echo"}],
                        "readiness_check": {"http_get": {"path": "/healthz", "port": 8000}}}],
    })

    result = launch(service_file, model_dir=None)

    assert result.argv == ["sh", "-c", "python app.py"]
    assert result.env == {"MODE": "echo", "PORT": "{port}"}
    assert result.health_path == "/healthz"


def test_it_starts_a_custom_script_that_answers_on_the_given_port(tmp_path):
    (tmp_path / "index.html").write_text("hello")
    service_file = {"name": "svc", "processor": "custom",
                    "containers": [{"image": "any", "port": 8000,
                                    "script": f'exec {sys.executable} -m http.server --bind 127.0.0.1 "$PORT"'}]}

    server = ServerProcess(launch(service_file, model_dir=str(tmp_path)), tmp_path / "server.log")
    try:
        server.wait_ready(timeout=30)
        assert server.get("/index.html").text == "hello"
    finally:
        server.stop()


def test_it_cannot_run_a_container_without_a_script_here():
    with pytest.raises(ProcessorUnavailable) as raised:
        launch({"name": "svc", "processor": "custom", "containers": [{"image": "nginx", "port": 80}]})

    assert raised.value.reason == "ContainerImageOnly"


def test_it_knows_an_image_protocol_and_metrics_path_for_every_processor():
    assert set(PROCESSORS) == set(KNOWN_PROCESSORS)
    assert kubernetes_image("onnx")[1][kubernetes_image("onnx")[1].index("--processor") + 1] == "onnx"
    assert kubernetes_image("custom", {"containers": [{"image": "me/app:1"}]}) == ("me/app:1", [])
    assert kubernetes_image("triton")[0].endswith("tritonserver:24.08-py3")
    assert inference_protocol("sklearn") == "v1+v2"
    assert metrics_path("sklearn") == "/metrics"


@pytest.mark.skipif(not (os.environ.get("FERRY_TRITONSERVER") or shutil.which("tritonserver")),
                    reason="no tritonserver here (pip install nvidia-pytriton, then set FERRY_TRITONSERVER)")
def test_it_starts_tritonserver_on_an_empty_model_repository(tmp_path):
    server = ServerProcess(launch({"name": "svc", "processor": "triton"}, model_dir=str(tmp_path)), tmp_path / "log")
    try:
        server.wait_ready(timeout=120)
        assert server.get("/v2").json()["name"] == "triton"
    finally:
        server.stop()
