"""Settings the API accepts are honoured, and the ones Ferry does not do are refused by name, through the
official SDK (as EAS users script them)."""

import json

import pytest
from alibabacloud_eas20210701 import models as eas_models
from Tea.exceptions import TeaException

from deployer.routing import route_entry
from services.models import Project, Service
from services.writes import service_create

# Real commits (the SDK calls a live server); serialized_rollback restores the default project and cluster.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
FILE = {"name": "refusals", "processor": "sklearn", "model_path": "/models/iris.joblib", "metadata": {"instance": 0}}


def _error(call) -> TeaException:
    with pytest.raises(TeaException) as raised:
        call()
    return raised.value


def test_the_gateway_is_given_the_per_instance_concurrency_of_the_service_file():
    document = {**FILE, "metadata": {"instance": 0, "container_concurrency": 2}}
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
    assert route_entry(service, "token").instance_concurrency == 2


def test_create_refuses_development_mode_and_a_service_type_it_does_not_do_and_creates_nothing(alice_sdk):
    error = _error(lambda: alice_sdk.create_service(
        eas_models.CreateServiceRequest(body=json.dumps(FILE), develop="true")))
    assert error.code == "InvalidParameter" and "Develop: development mode is not supported" in error.message, error.message
    typed = {**FILE, "metadata": {"instance": 0, "type": "LLM"}}  # "Async" is served: docs/async.md
    error = _error(lambda: alice_sdk.create_service(eas_models.CreateServiceRequest(body=json.dumps(typed))))
    assert error.code == "InvalidServiceConfig" and "metadata.type" in error.message, error.message
    assert not Service.objects.filter(name="refusals").exists()


def test_delete_instances_refuses_a_soft_restart_and_one_container_by_name(alice_sdk):
    alice_sdk.create_service(eas_models.CreateServiceRequest(body=json.dumps(FILE)))
    soft = eas_models.DeleteServiceInstancesRequest(instance_list="refusals-v1-1", soft_restart=True)
    error = _error(lambda: alice_sdk.delete_service_instances("local", "refusals", soft))
    assert "SoftRestart: a soft restart" in error.message, error.message
    one_container = eas_models.DeleteServiceInstancesRequest(instance_list="refusals-v1-1", container="sidecar")
    error = _error(lambda: alice_sdk.delete_service_instances("local", "refusals", one_container))
    assert "Container: restarting one container" in error.message, error.message


def test_list_services_refuses_a_filter_it_has_no_data_for_by_name(alice_sdk):
    alice_sdk.create_service(eas_models.CreateServiceRequest(body=json.dumps(FILE)))
    error = _error(lambda: alice_sdk.list_services(eas_models.ListServicesRequest(service_type="Async")))
    assert "ServiceType: filtering by it is not supported" in error.message, error.message
    listed = alice_sdk.list_services(eas_models.ListServicesRequest(service_name="refusals")).body
    assert [service.service_name for service in listed.services] == ["refusals"]
