"""The model mesh's service files and write rules (services/servicefile/mesh.py, services/writes/mesh.py): what a
pool and a model in a pool may say, checked as a user writes them."""

import pytest

from services.errors import Conflict, InvalidRequest
from services.models import Project, Service
from services.servicefile import ServiceFileError, validate_service_file
from services.writes import service_create, service_delete, service_update

POOL = {"name": "pool1", "processor": "sklearn", "metadata": {"type": "ModelPool", "instance": 2, "memory": 2048}}
MODEL = {"name": "m1", "model_path": "/models/m1", "metadata": {"pool": "pool1"}}


def errors_of(document) -> dict[str, str]:
    with pytest.raises(ServiceFileError) as caught:
        validate_service_file(document)
    return {error.path: error.message for error in caught.value.errors}


def test_a_pool_and_a_model_validate_and_a_model_gets_no_process_defaults():
    pool = validate_service_file(POOL | {"model_mesh": {"rate_per_copy": 5, "load_timeout": 20}})
    assert pool["metadata"]["type"] == "ModelPool" and pool["model_mesh"]["rate_per_copy"] == 5
    model = validate_service_file(MODEL)
    assert model["metadata"]["instance"] == 0
    assert "processor" not in model and "memory" not in model["metadata"]


def test_what_belongs_to_the_pool_is_refused_on_a_model_by_name():
    errors = errors_of(MODEL | {"metadata": {"pool": "pool1", "instance": 3, "memory": 512},
                                "autoscaler": {"min": 1, "max": 2, "scaleStrategies": [{"metricName": "qps",
                                                                                         "threshold": 5}]},
                                "warm_up_data_path": "/w.json"})
    assert set(errors) >= {"metadata.instance", "metadata.memory", "autoscaler", "warm_up_data_path"}
    assert "scale the pool" in errors["metadata.instance"] or "pool" in errors["metadata.instance"]
    assert errors_of({"name": "m1", "metadata": {"pool": "pool1"}})["model_path"].startswith("is required")


def test_a_pool_runs_a_processor_that_can_load_models_and_has_no_model_of_its_own():
    errors = errors_of({"name": "p", "processor": "tensorflow_cpu_1.15", "model_path": "/m",
                        "metadata": {"type": "ModelPool"}})
    assert "sklearn" in errors["processor"] and "tensorflow_cpu_1.15" in errors["processor"]
    assert "each model" in errors_of(POOL | {"model_path": "/m"})["model_path"]
    assert "ModelPool" in errors_of(POOL | {"metadata": {"type": "Batch"}})["metadata.type"]
    assert "pool" in errors_of({"name": "s", "processor": "sklearn", "model_path": "/m",
                                "model_mesh": {"max_copies": 1}})["model_mesh"]


def test_an_adapter_pool_serves_its_base_model_and_takes_only_adapter_settings():
    adapters = {"name": "llmpool", "processor": "vllm", "model_path": "/models/base",
                "metadata": {"type": "ModelPool", "instance": 1, "memory": 8192},
                "model_mesh": {"max_adapters": 8, "max_lora_rank": 16}}
    assert validate_service_file(adapters)["model_mesh"]["max_adapters"] == 8
    no_base = errors_of({k: v for k, v in adapters.items() if k != "model_path"})
    assert "base model" in no_base["model_path"]
    assert "one of 8, 16" in errors_of(adapters | {"model_mesh": {"max_lora_rank": 12}})["model_mesh.max_lora_rank"]
    assert "adapter pool" in errors_of(POOL | {"model_mesh": {"max_adapters": 2}})["model_mesh.max_adapters"]
    assert "pool of" in errors_of(adapters | {"model_mesh": {"model_memory": 100}})["model_mesh.model_memory"]


@pytest.mark.django_db
def test_a_model_takes_its_pools_processor_and_must_name_a_pool_of_its_own_project():
    project = Project.objects.get(name="default")
    with pytest.raises(InvalidRequest, match="no pool named"):
        service_create(actor=None, project=project, document=MODEL)
    assert not Service.objects.filter(name="m1").exists()
    service_create(actor=None, project=project, document=POOL)
    model = service_create(actor=None, project=project, document=MODEL)
    assert model.spec["processor"] == "sklearn"
    with pytest.raises(InvalidRequest, match='runs "sklearn"'):
        service_create(actor=None, project=project, document=MODEL | {"name": "m2", "processor": "xgboost"})
    other = Project.objects.create(name="other")
    with pytest.raises(InvalidRequest, match="no pool named"):
        service_create(actor=None, project=other, document=MODEL | {"name": "m3"})
    plain = service_create(actor=None, project=project, document={"name": "plain", "processor": "sklearn",
                                                                  "model_path": "/m"})
    with pytest.raises(InvalidRequest, match="not a pool"):
        service_create(actor=None, project=project, document=MODEL | {"name": "m4", "metadata": {"pool": "plain"}})
    assert plain.pk


@pytest.mark.django_db
def test_a_model_stays_in_its_pool_and_a_pool_outlives_none_of_its_models():
    project = Project.objects.get(name="default")
    pool = service_create(actor=None, project=project, document=POOL)
    service_create(actor=None, project=project, document=POOL | {"name": "pool2"})
    model = service_create(actor=None, project=project, document=MODEL)
    with pytest.raises(InvalidRequest, match="cannot be changed"):
        service_update(actor=None, service=model, patch={"metadata": {"pool": "pool2"}})
    with pytest.raises(InvalidRequest, match="while the pool serves m1"):
        service_update(actor=None, service=pool, patch={"processor": "xgboost"})
    with pytest.raises(Conflict, match="still serves m1"):
        service_delete(actor=None, service=pool)
    updated = service_update(actor=None, service=model, patch={"model_path": "/models/m1b"})
    assert updated.versions.count() == 2  # a new model file is a new version, rolled out as any
    service_delete(actor=None, service=model)
    service_delete(actor=None, service=pool)
    assert Service.objects.get(pk=pool.pk).deletion_requested_at is not None
