"""Behaviour of service-file validation (pure Python: no Django, no database)."""

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from processors.codes import KNOWN_PROCESSORS, resolve_processor
from services.servicefile import (
    SERVICE_FILE_SCHEMA,
    FieldError,
    ServiceFileError,
    dns_name,
    instance_spec,
    merge_update,
    service_name_of,
    validate_service_file,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json")) if EXAMPLES.is_dir() else []

SKLEARN = {
    "name": "iris_sklearn",
    "processor": "sklearn",
    "model_path": "file:///srv/models/iris/model.joblib",
}
CONTAINERS = {
    "metadata": {"name": "echo_app", "instance": 2},
    "containers": [{"image": "python:3.11-slim", "script": "python app.py", "port": 8000}],
}


def errors_of(doc) -> dict[str, list[str]]:
    """Validation messages by path; fails the test if the file is accepted."""
    with pytest.raises(ServiceFileError) as raised:
        validate_service_file(doc)
    by_path: dict[str, list[str]] = {}
    for error in raised.value.errors:
        by_path.setdefault(error.path, []).append(error.message)
    return by_path


def with_changes(doc: dict, **changes) -> dict:
    return {**copy.deepcopy(doc), **changes}


@pytest.mark.skipif(not EXAMPLE_FILES, reason=f"no example service files in {EXAMPLES}")
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_it_accepts_every_shared_example_as_it_is(path):
    doc = json.loads(path.read_text())
    original = copy.deepcopy(doc)

    normalized = validate_service_file(doc)

    assert doc == original, "the caller's document must not be modified"
    assert normalized["name"] == service_name_of(doc)
    assert normalized["processor"] in KNOWN_PROCESSORS
    assert validate_service_file(normalized) == normalized, "normalizing must be idempotent"


def test_it_fills_the_documented_defaults():
    normalized = validate_service_file({"name": "tiny", "processor": "onnx", "model_path": "/m"})

    metadata = normalized["metadata"]
    assert (metadata["instance"], metadata["cpu"], metadata["memory"], metadata["gpu"]) == (
        1,
        1,
        1024,
        0,
    )
    assert metadata["resource"] == ""
    assert metadata["enable_grpc"] is False and metadata["enable_webservice"] is False
    assert metadata["rpc"] == {
        "keepalive": 5000,
        "io_threads": 4,
        "worker_threads": 5,
        "max_queue_size": 64,
        "batching": False,
    }
    assert normalized["rollout"] == {"strategy": "rolling"}
    assert "processor_code" not in normalized


def test_it_keeps_given_values_over_defaults_and_defaults_a_canary_weight():
    doc = with_changes(SKLEARN, rollout={"strategy": "canary"})
    doc["metadata"] = {"cpu": 0.5, "rpc": {"keepalive": 70000}}

    normalized = validate_service_file(doc)

    assert normalized["metadata"]["cpu"] == 0.5
    assert normalized["metadata"]["rpc"]["keepalive"] == 70000
    assert normalized["metadata"]["rpc"]["worker_threads"] == 5
    assert normalized["rollout"] == {"strategy": "canary", "canary_weight": 10}


def test_it_reports_every_problem_at_once_with_its_path():
    doc = {
        "name": "Bad-Name",
        "processor": "sklearn",
        "model_path": "/srv/model.joblib",
        "modle_entry": "x",
        "metadata": {"instance": "2", "cpu": -1, "memory": 1.5, "gpus": 1},
        "processor_params": ["--a", 3],
    }

    errors = errors_of(doc)

    assert errors == {
        "$": ['unknown field "modle_entry" (did you mean "model_entry"?)'],
        "name": [
            "must be a name of lowercase letters, digits and underscores that starts "
            "with a letter and has at most 63 characters"
        ],
        "metadata": ['unknown field "gpus" (did you mean "gpu"?)'],
        "metadata.instance": ["must be an integer >= 0"],
        "metadata.cpu": ["must be a number >= 0"],
        "metadata.memory": ["must be an integer >= 0"],
        "processor_params[1]": ["must be a string"],
    }


def test_it_words_the_error_text_as_path_colon_message():
    with pytest.raises(ServiceFileError) as raised:
        validate_service_file(with_changes(SKLEARN, metadata={"instance": -1}))

    assert raised.value.errors == [FieldError("metadata.instance", "must be an integer >= 0")]
    assert str(raised.value) == "metadata.instance: must be an integer >= 0"


def test_it_rejects_a_root_that_is_not_an_object_with_one_error():
    for doc in ([SKLEARN], "service.json", None):
        assert errors_of(doc) == {"$": ["must be a JSON object (a service file)"]}


def test_it_reads_flat_dotted_eas_keys_as_nested_fields():
    flat = {"rpc.keepalive": 20000, "rolling_strategy.max_surge": "25%"}
    doc = with_changes(SKLEARN, metadata=flat)

    metadata = validate_service_file(doc)["metadata"]

    assert metadata["rpc"]["keepalive"] == 20000
    assert metadata["rolling_strategy"] == {"max_surge": "25%"}
    assert "rpc.keepalive" not in metadata


def test_it_rejects_a_field_given_both_flat_and_nested_with_different_values():
    doc = with_changes(SKLEARN, metadata={"rpc.keepalive": 1000, "rpc": {"keepalive": 2000}})

    assert "metadata.rpc.keepalive" in errors_of(doc)


@pytest.mark.parametrize(
    ("code", "processor"),
    [
        ("tensorflow_gpu_1.15", "tfserving"),
        ("tensorflow_cpu_1.15", "tfserving"),
        ("tensorflow_cpu_2.x", "tfserving"),
        ("tensorflow_cpu", "tfserving"),
        ("pytorch_gpu_1.6", "torchserve"),
        ("pytorch_cpu_1.6", "torchserve"),
        ("triton", "triton"),
        ("pmml", "pmml"),
        ("mlserver", "mlserver"),
    ],
)
def test_it_maps_eas_processor_codes_to_ferry_processors(code, processor):
    assert resolve_processor(code) == processor


def test_it_keeps_the_original_code_only_when_it_differs_from_the_processor():
    eas = validate_service_file(with_changes(SKLEARN, processor="tensorflow_gpu_1.15"))
    ferry = validate_service_file(SKLEARN)

    assert (eas["processor"], eas["processor_code"]) == ("tfserving", "tensorflow_gpu_1.15")
    assert ferry["processor"] == "sklearn" and "processor_code" not in ferry


def test_it_rejects_an_unknown_processor_code_listing_the_known_ones():
    with pytest.raises(ValueError) as raised:
        resolve_processor("caffe_cpu")
    for known in KNOWN_PROCESSORS + ("tensorflow_gpu[_<version>]", "pytorch_cpu[_<version>]"):
        assert known in str(raised.value)

    [message] = errors_of(with_changes(SKLEARN, processor="sklern"))["processor"]
    assert message.startswith('unknown processor code "sklern" (did you mean "sklearn"?)')
    assert "known codes: sklearn, xgboost" in message


def test_it_requires_a_model_for_processors_that_load_one():
    assert errors_of({"name": "m", "processor": "xgboost"}) == {
        "model_path": ['is required by processor "xgboost"']
    }
    assert "model_path" in errors_of({"name": "t", "processor": "triton"})
    params = ["--model-repository=s3://bucket/models"]
    assert validate_service_file({"name": "t", "processor": "triton", "processor_params": params})


@pytest.mark.parametrize(
    "location",
    ["/srv/m.onnx", "file:///srv/m.onnx", "http://h/m", "https://h/m", "s3://b/m", "oss://b/m"],
)
def test_it_accepts_the_supported_model_locations(location):
    normalized = validate_service_file(with_changes(SKLEARN, model_path=location))

    assert normalized["model_path"] == location


def test_it_rejects_a_model_path_scheme_it_cannot_fetch_naming_the_scheme():
    [message] = errors_of(with_changes(SKLEARN, model_path="ftp://host/model.joblib"))["model_path"]
    assert 'unsupported scheme "ftp://"' in message

    assert "model_path" in errors_of(with_changes(SKLEARN, model_path="models/model.joblib"))


def test_it_accepts_the_containers_style_as_a_custom_processor():
    doc = copy.deepcopy(CONTAINERS)
    doc["storage"] = [{"mount_path": "/models", "oss": {"path": "oss://bucket/models/"}}]

    normalized = validate_service_file(doc)

    assert normalized["name"] == "echo_app"
    assert "name" not in normalized["metadata"], "the name lives at the top level only"
    assert normalized["processor"] == "custom"
    assert normalized["metadata"]["instance"] == 2
    assert normalized["storage"][0]["oss"]["readOnly"] is False


def test_it_checks_containers_and_storage_entries():
    doc = copy.deepcopy(CONTAINERS)
    doc["containers"] = [{"script": "run", "command": "run", "env": [{"name": "A", "value": 1}]}]
    doc["storage"] = [
        {"mount_path": "data", "oss": {"path": "/x"}, "nfs": {"server": "s", "path": "/"}}
    ]

    errors = errors_of(doc)

    assert errors["containers[0].image"] == ["is required"]
    assert errors["containers[0].port"] == ["is required: the port the server listens on"]
    assert errors["containers[0].command"] == ["cannot be given together with script"]
    assert errors["containers[0].env[0].value"] == ["must be a string"]
    assert errors["storage[0]"] == ["must have exactly one of: oss, nfs, git, image, empty_dir"]
    assert errors["storage[0].mount_path"] == ["must be an absolute path"]
    assert errors["storage[0].oss.path"] == ['must be an "oss://" path']


def test_it_rejects_a_processor_together_with_containers():
    doc = with_changes(CONTAINERS, processor="sklearn", model_path="/m")

    assert "containers" in errors_of(doc)


def test_it_rejects_two_different_names():
    doc = with_changes(CONTAINERS, name="echo_app_2")

    assert errors_of(doc) == {
        "metadata.name": ['"echo_app" differs from name "echo_app_2"; give the name once']
    }
    assert validate_service_file(with_changes(CONTAINERS, name="echo_app"))["name"] == "echo_app"


def test_it_requires_a_name():
    assert "name" in errors_of({"processor": "onnx", "model_path": "/m"})


def test_it_checks_the_autoscaler_and_rollout():
    doc = with_changes(
        SKLEARN,
        autoscaler={
            "min": 5,
            "max": 2,
            "scaleStrategies": [{"metricName": "cpu", "threshold": 150}],
        },
        rollout={"strategy": "rolling", "canary_weight": 20},
    )

    errors = errors_of(doc)

    assert errors["autoscaler.min"] == ["must not be greater than max (2)"]
    assert errors["autoscaler.scaleStrategies[0].threshold"] == [
        'must be <= 100 for "cpu" (a percentage)'
    ]
    assert errors["rollout.canary_weight"] == ['applies only when strategy is "canary"']


def test_it_accepts_an_eas_autoscaler_with_behavior():
    autoscaler = {
        "min": 0,
        "max": 4,
        "scaleStrategies": [{"metricName": "qps", "threshold": 10}],
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 0},
            "scaleDown": {"stabilizationWindowSeconds": 300},
            "onZero": {"scaleDownGracePeriodSeconds": 600, "scaleUpActivationReplicas": 1},
        },
    }

    normalized = validate_service_file(with_changes(SKLEARN, autoscaler=autoscaler))

    assert normalized["autoscaler"] == autoscaler


def test_it_updates_the_instance_count_without_changing_the_instance_spec():
    current = validate_service_file(SKLEARN)

    updated = merge_update(current, {"metadata": {"instance": 3}})

    assert updated["metadata"]["instance"] == 3
    assert updated["metadata"]["memory"] == current["metadata"]["memory"]
    assert instance_spec(updated) == instance_spec(current)


def test_it_changes_the_instance_spec_when_the_model_changes():
    current = validate_service_file(SKLEARN)

    updated = merge_update(current, {"model_path": "s3://models/iris/v2/model.joblib"})

    assert updated["model_path"] == "s3://models/iris/v2/model.joblib"
    assert instance_spec(updated) != instance_spec(current)


def test_it_leaves_scaling_placement_and_rollout_out_of_the_instance_spec():
    current = validate_service_file(SKLEARN)
    patch = {
        "token": "secret",
        "labels": {"team": "search"},
        "rollout": {"strategy": "blue-green"},
        "autoscaler": {
            "min": 1,
            "max": 3,
            "scaleStrategies": [{"metricName": "qps", "threshold": 5}],
        },
        "metadata": {"group": "iris", "resource": "gpu_pool", "workspace_id": "ws1"},
    }

    assert instance_spec(merge_update(current, patch)) == instance_spec(current)
    assert instance_spec(merge_update(current, {"metadata": {"cpu": 2}})) != instance_spec(current)


def test_it_deletes_fields_set_to_null_in_an_update():
    current = validate_service_file(with_changes(SKLEARN, model_entry="model.joblib"))

    assert "model_entry" not in merge_update(current, {"model_entry": None})


def test_it_rejects_a_rename_in_an_update_along_with_other_problems():
    current = validate_service_file(SKLEARN)

    for patch in ({"name": "other"}, {"metadata": {"name": "other"}}):
        with pytest.raises(ServiceFileError) as raised:
            merge_update(current, patch)
        assert [error.path for error in raised.value.errors] == ["name"]

    with pytest.raises(ServiceFileError) as raised:
        merge_update(current, {"name": "other", "metadata": {"cpu": -1}})
    assert {error.path for error in raised.value.errors} == {"name", "metadata.cpu"}


def test_it_replaces_the_recorded_code_when_an_update_changes_the_processor():
    current = validate_service_file(with_changes(SKLEARN, processor="tensorflow_gpu_1.15"))

    updated = merge_update(current, {"processor": "pytorch_gpu_1.6"})

    assert (updated["processor"], updated["processor_code"]) == ("torchserve", "pytorch_gpu_1.6")


def test_it_gives_the_service_a_dns_label():
    assert dns_name("iris_sklearn") == "iris-sklearn"
    assert service_name_of({"metadata": {"name": "echo_app"}}) == "echo_app"


def test_it_ships_a_valid_json_schema():
    Draft202012Validator.check_schema(SERVICE_FILE_SCHEMA)
    assert json.loads(json.dumps(SERVICE_FILE_SCHEMA)) == SERVICE_FILE_SCHEMA


def test_it_refuses_the_llm_queue_metric_for_a_service_without_an_llm_engine():
    scaled = {"min": 0, "max": 3, "scaleStrategies": [{"metricName": "llm[waiting]", "threshold": 4}]}
    errors = errors_of({**SKLEARN, "autoscaler": scaled})
    assert errors["autoscaler.scaleStrategies[0].metricName"] == [
        '"llm[waiting]" is the queue of an LLM engine: only services whose processor is one of sglang, vllm '
        "have one; use qps or concurrency"]
    llm = {"name": "chat", "processor": "vllm", "model_path": "file:///models/tiny", "autoscaler": scaled}
    validate_service_file(llm)
    in_flight = {"min": 0, "max": 3, "scaleStrategies": [{"metricName": "concurrency", "threshold": 8}]}
    validate_service_file({**SKLEARN, "autoscaler": in_flight})  # requests in flight: any service
