"""metadata.rpc.batching in service files: accepted for the processors Ferry's server batches for, refused by
name (with the reason) for the others; and what the built-in server is launched with."""

import copy

import pytest

from processors.modelserver import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_TIMEOUT_MS
from processors.registry import batching_args
from services.servicefile import ServiceFileError, validate_service_file

MODEL = {"name": "svc", "model_path": "/models/m", "metadata": {"instance": 1}}


def _file(rpc: dict, **fields) -> dict:
    doc = copy.deepcopy({**MODEL, **fields})
    doc["metadata"]["rpc"] = rpc
    return doc


def _errors(doc: dict) -> dict[str, str]:
    with pytest.raises(ServiceFileError) as raised:
        validate_service_file(doc)
    return {error.path: error.message for error in raised.value.errors}


@pytest.mark.parametrize("processor", ["sklearn", "xgboost", "lightgbm", "onnx"])
def test_it_accepts_batching_for_the_processors_that_batch_and_keeps_the_settings(processor):
    rpc = {"batching": True, "max_batch_size": 32, "max_batch_timeout": 5}

    normalized = validate_service_file(_file(rpc, processor=processor))

    assert {key: normalized["metadata"]["rpc"][key] for key in rpc} == rpc


@pytest.mark.parametrize("fields, named", [
    ({"processor": "python", "processor_entry": "app.py"}, "handler"),
    ({"processor_type": "python", "processor_entry": "app.py", "processor_path": "/code"}, "handler"),
    ({"processor": "vllm"}, "vLLM batches"),
    ({"processor": "sglang"}, "SGLang batches"),
    ({"processor": "triton"}, "dynamic batcher"),
    ({"processor": "tensorflow_cpu_2.x"}, "--enable_batching"),
    ({"processor": "pytorch_gpu"}, "max_batch_delay"),
    ({"processor": "mlserver"}, "model-settings.json"),
    ({"processor": "pmml"}, "does not batch"),
    ({"containers": [{"image": "me/server:1", "port": 8000}], "model_path": None}, "your own container"),
])
def test_it_refuses_batching_by_name_where_the_server_cannot_or_batches_on_its_own(fields, named):
    doc = {key: value for key, value in _file({"batching": True}, **fields).items() if value is not None}

    errors = _errors(doc)

    assert list(errors) == ["metadata.rpc.batching"], errors
    assert named in errors["metadata.rpc.batching"]


def test_it_refuses_batching_on_a_model_pool():
    pool = {"metadata": {"name": "pool", "type": "ModelPool", "instance": 1, "rpc": {"batching": True}},
            "processor": "sklearn"}

    errors = _errors(pool)

    assert "metadata.rpc.batching" in errors and "pool" in errors["metadata.rpc.batching"]


@pytest.mark.parametrize("rpc, path", [
    ({"max_batch_size": 8}, "metadata.rpc.max_batch_size"),
    ({"batching": False, "max_batch_timeout": 5}, "metadata.rpc.max_batch_timeout"),
])
def test_a_batch_setting_without_batching_on_is_refused_naming_it(rpc, path):
    errors = _errors(_file(rpc, processor="sklearn"))

    assert errors == {path: "applies only when metadata.rpc.batching is true"}


@pytest.mark.parametrize("rpc, path", [
    ({"batching": True, "max_batch_size": 0}, "metadata.rpc.max_batch_size"),
    ({"batching": True, "max_batch_timeout": -1}, "metadata.rpc.max_batch_timeout"),
    ({"batching": "yes"}, "metadata.rpc.batching"),
])
def test_out_of_range_values_are_refused_naming_the_field(rpc, path):
    assert path in _errors(_file(rpc, processor="sklearn"))


def test_the_server_is_launched_with_the_files_settings_or_the_defaults():
    assert batching_args({"metadata": {"rpc": {"batching": True, "max_batch_size": 4, "max_batch_timeout": 7}}}) == [
        "--max-batch-size", "4", "--max-batch-timeout-ms", "7"]
    assert batching_args({"metadata": {"rpc": {"batching": True}}}) == [
        "--max-batch-size", str(DEFAULT_MAX_BATCH_SIZE), "--max-batch-timeout-ms", str(DEFAULT_MAX_BATCH_TIMEOUT_MS)]
    assert batching_args({"metadata": {"rpc": {"batching": False}}}) == []
    assert batching_args({}) == []


def test_kubernetes_runs_the_built_in_server_with_the_same_batching_options():
    from deployer.kubernetes.render import render
    from tests.kubernetes.helpers import by_kind, desired_for, example

    doc = example("iris_sklearn")
    doc = validate_service_file({**doc, "metadata": {**doc["metadata"], "rpc": {
        **doc["metadata"].get("rpc", {}), "batching": True, "max_batch_size": 24, "max_batch_timeout": 3}}})

    deployment = by_kind(render(desired_for(doc, flavor="raw")), "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    assert args[args.index("--max-batch-size") + 1] == "24"
    assert args[args.index("--max-batch-timeout-ms") + 1] == "3"
