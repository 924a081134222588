"""CloneService and DescribeMachineSpec, driven by the official EAS SDK."""

import json
import os

import pytest
from alibabacloud_eas20210701 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException

from services.models import Service

from .conftest import example

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def clone(sdk, body: dict, labels: dict | None = None, source: str = "iris_sklearn"):
    return sdk.clone_service("local", source, m.CloneServiceRequest(body=json.dumps(body), labels=labels))


def refused(call, *args) -> ClientException:
    with pytest.raises(ClientException) as error:
        call(*args)
    return error.value


def config_of(sdk, name: str) -> dict:
    return json.loads(sdk.describe_service("local", name).body.service_config)


def test_a_clone_is_the_source_as_it_stands_with_a_new_name_and_token(alice_sdk):
    alice_sdk.create_service(m.CreateServiceRequest(body=json.dumps(example("iris_sklearn.json")),
                                                    labels={"team": "search", "env": "prod"}))
    alice_sdk.update_service("local", "iris_sklearn", m.UpdateServiceRequest(body='{"metadata": {"instance": 3}}'))
    alice_sdk.update_service_safety_lock("local", "iris_sklearn", m.UpdateServiceSafetyLockRequest(lock="all"))

    # A locked source can be cloned: cloning changes nothing of it.
    response = clone(alice_sdk, {"name": "iris_copy", "metadata": {"memory": 2048}}, labels={"env": "staging"})
    assert response.status_code == 202
    assert (response.body.service_name, response.body.status) == ("iris_copy", "Creating")
    assert response.body.intranet_endpoint.endswith("/api/predict/iris_copy")

    source, copy = config_of(alice_sdk, "iris_sklearn"), config_of(alice_sdk, "iris_copy")
    assert copy["name"] == "iris_copy" and copy["model_path"] == source["model_path"]
    assert copy["metadata"]["instance"] == 3  # the scaling the source has now, not its first file's 2
    assert (copy["metadata"]["memory"], source["metadata"]["memory"]) == (2048, 1024)
    assert copy["metadata"]["rpc"] == source["metadata"]["rpc"]
    assert copy["labels"] == {"team": "search", "env": "staging"}

    described = alice_sdk.describe_service("local", "iris_copy").body
    assert described.safety_lock == "none"
    assert described.access_token and described.access_token != \
        alice_sdk.describe_service("local", "iris_sklearn").body.access_token
    assert Service.objects.get(name="iris_copy").project == Service.objects.get(name="iris_sklearn").project
    assert "ClonedService" in [event.reason for event in alice_sdk.describe_service_event(
        "local", "iris_copy", m.DescribeServiceEventRequest()).body.events]


def test_a_clone_needs_a_new_valid_name_and_a_valid_file_and_makes_nothing_otherwise(alice_sdk):
    alice_sdk.create_service(m.CreateServiceRequest(body=json.dumps(example("iris_sklearn.json"))))

    unnamed = refused(clone, alice_sdk, {"metadata": {"instance": 1}})
    assert (unnamed.status_code, unnamed.code) == (400, "InvalidServiceConfig") and "name" in unnamed.message
    same_name = refused(clone, alice_sdk, {"name": "iris_sklearn"})
    assert same_name.status_code == 409
    bad = refused(clone, alice_sdk, {"name": "iris_copy", "metadata": {"instance": -1, "cpu": "four"}})
    assert bad.status_code == 400 and "metadata.instance" in bad.message and "metadata.cpu" in bad.message
    bad_labels = refused(clone, alice_sdk, {"name": "iris_copy"}, {"a,b": "x"})
    assert bad_labels.status_code == 400 and "Labels.a,b" in bad_labels.message
    missing = refused(clone, alice_sdk, {"name": "iris_copy"}, None, "no_such_service")
    assert (missing.status_code, missing.code) == (404, "ServiceNotFound")
    assert list(Service.objects.values_list("name", flat=True)) == ["iris_sklearn"]

    # metadata.name names the clone too, as it names a service on create.
    assert clone(alice_sdk, {"metadata": {"name": "iris_meta"}}).body.service_name == "iris_meta"


def test_the_machine_spec_is_this_hosts_cpus_and_memory_without_gpu(alice_sdk):
    body = alice_sdk.describe_machine_spec(m.DescribeMachineSpecRequest()).body
    (meta,) = body.instance_metas
    assert (meta.instance_type, meta.cpu, meta.gpuamount, meta.gpu) == ("local", os.cpu_count(), 0, None)
    host_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    assert abs(meta.memory - host_gb) < 0.1
    assert (meta.is_available, meta.stock_status) == (True, "WithStock")
    assert [t.cpu for t in body.types] == list(range(1, os.cpu_count() + 1))
    assert all(size <= host_gb * 1024 for t in body.types for size in t.memory)

    filtered = alice_sdk.describe_machine_spec(m.DescribeMachineSpecRequest(instance_types=["ecs.g6.large"])).body
    assert filtered.instance_metas == []


@pytest.mark.django_db
def test_the_openapi_document_describes_the_new_operations():
    from rest_framework.test import APIClient

    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation_ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"CloneService", "UpdateServiceLabel", "DeleteServiceLabel", "UpdateServiceSafetyLock",
            "DescribeServiceDiagnosis", "DescribeServiceInstanceDiagnosis", "ListServiceContainers",
            "DescribeMachineSpec"} <= operation_ids
    assert schema["paths"]["/api/v2/public/instance_types"]["get"]["operationId"] == "DescribeMachineSpec"
