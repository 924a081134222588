"""DescribeServiceDiagnosis, DescribeServiceInstanceDiagnosis and ListServiceContainers, driven by the official
EAS SDK: on recorded failures, and on a real node agent running a script that crashes and one that serves."""

import json
import sys
import time

import pytest
from alibabacloud_eas20210701 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException
from django.test import override_settings

from deployer.reconcile import reconcile
from services.models import Service
from services.writes import api_token_create
from tests.agent.kit import LocalCluster

from .conftest import api_client_for, close_sdk_connections, example, sdk_with_token

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

CRASHES = ("echo 'Traceback (most recent call last):'; "
           "echo \"ModuleNotFoundError: No module named 'torch'\"; exit 1")


def custom_service(name: str, script: str) -> dict:
    return {"metadata": {"name": name, "instance": 1},
            "containers": [{"image": "python:3.11-slim", "script": script, "port": 8000}]}


def converge(name: str, until, timeout: float = 60.0) -> Service:
    """Reconciles as the sweep does until `until(service)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        service = Service.objects.get(name=name)
        reconcile(service.pk)
        service.refresh_from_db()
        if until(service):
            return service
        if time.monotonic() > deadline:
            states = list(service.instances.values_list("name", "state", "last_exit_reason"))
            raise AssertionError(f"waited {timeout:g} s for {name}: {service.phase}, {states}")
        time.sleep(0.25)


def crash_looping(service: Service) -> bool:
    return any(i.state == "CrashLoopBackOff" and i.restart_count >= 1 for i in service.instances.all())


def serving(service: Service) -> bool:
    return service.phase == "Running" and service.instances.filter(ready=True).exists()


@pytest.fixture
def local_cluster(tmp_path):
    cluster = LocalCluster(tmp_path, service=None)
    # The reconciler (here and in the live server) and the agent must agree on where instances log.
    with override_settings(VAR_DIR=cluster.var_dir):
        cluster.start_agent()
        yield cluster
        for agent in cluster.agents:
            if agent.running():
                agent.send(15)
                agent.wait(60)
    leftovers = cluster.clean_up()
    assert not leftovers, f"instance processes outlived the agent: {leftovers}"


@pytest.fixture
def sdk(live_server, alice):
    _, token = api_token_create(user=alice, name="sdk")
    yield sdk_with_token(live_server.url, token)
    close_sdk_connections()


def test_a_crash_loop_is_diagnosed_with_its_exit_its_log_and_a_hint(sdk, alice, local_cluster):
    sdk.create_service(m.CreateServiceRequest(body=json.dumps(custom_service("crashy", CRASHES))))
    instance = converge("crashy", crash_looping).instances.get()

    diagnosis = sdk.describe_service_instance_diagnosis("local", "crashy", instance.name).body.diagnosis
    assert diagnosis.error == f"Instance {instance.name} keeps crashing (CrashLoopBackOff)"
    assert diagnosis.causes[0].startswith("Last exit: exited with code 1; restarted ")
    assert "Exit code 1: the program stopped on an error." in diagnosis.causes
    log = diagnosis.causes[-1]
    assert log.startswith("Last log lines:") and "No module named 'torch'" in log
    assert "[ferry-agent]" not in log  # the program's own lines, not the agent's notes
    assert "pythonRequirements" in diagnosis.advices[0]

    service_diagnosis = sdk.describe_service_diagnosis("local", "crashy").body.diagnosis_list
    assert diagnosis.error in [finding.error for finding in service_diagnosis]

    (container,) = sdk.list_service_containers("local", "crashy", instance.name).body.containers
    assert (container.name, container.image, container.ready) == ("main", "python:3.11-slim", False)
    assert container.restart_count >= 1
    assert (container.last_status, container.last_reason) == ("Terminated", "exited with code 1")


def test_a_serving_instance_has_no_problem_and_shows_what_runs(sdk, alice, local_cluster):
    serve = f"{sys.executable} -m http.server {{port}} --bind 127.0.0.1"
    sdk.create_service(m.CreateServiceRequest(body=json.dumps(custom_service("healthy", serve))))
    instance = converge("healthy", serving).instances.get()

    body = sdk.describe_service_diagnosis("local", "healthy").body
    assert body.diagnosis_list == []
    assert sdk.describe_service_instance_diagnosis("local", "healthy", instance.name).body.diagnosis.error == ""

    (container,) = sdk.list_service_containers("local", "healthy", instance.name).body.containers
    assert (container.current_status, container.current_reaon, container.ready) == ("Running", "", True)
    assert (container.port, container.restart_count, container.last_status) == (instance.port, 0, "")
    assert container.current_timestamp
    raw = api_client_for(alice).get(f"/api/v2/services/local/healthy/instances/{instance.name}/containers").json()
    assert "http.server" in raw["Containers"][0]["Command"] and str(instance.port) in raw["Containers"][0]["Command"]
    assert api_client_for(alice).get("/api/v2/services/local/healthy/diagnosis").json()["Message"] == \
        "No problem found."


def test_a_model_that_cannot_be_fetched_is_diagnosed_and_a_stopped_service_is_not(sdk):
    sdk.create_service(m.CreateServiceRequest(body=json.dumps(example("iris_sklearn.json"))))
    (finding,) = sdk.describe_service_diagnosis("local", "iris_sklearn").body.diagnosis_list
    assert finding.error == "The model cannot be fetched"
    assert "/srv/models/iris/model.joblib" in finding.causes[0]
    assert any("model_path" in advice for advice in finding.advices)

    sdk.stop_service("local", "iris_sklearn")
    converge("iris_sklearn", lambda service: service.phase == "Stopped")
    assert sdk.describe_service_diagnosis("local", "iris_sklearn").body.diagnosis_list == []


def test_an_unknown_instance_is_named_in_a_404(sdk):
    sdk.create_service(m.CreateServiceRequest(body=json.dumps(example("iris_sklearn.json"))))
    for call in (sdk.describe_service_instance_diagnosis, sdk.list_service_containers):
        with pytest.raises(ClientException) as missing:
            call("local", "iris_sklearn", "iris-sklearn-9-zzz")
        assert (missing.value.status_code, missing.value.code) == (404, "InstanceNotFound")
        assert "iris-sklearn-9-zzz" in missing.value.message


@pytest.mark.django_db
def test_the_diagnosis_holds_a_service_to_its_own_progress_deadline(alice_api, settings):
    from services.selectors.diagnosis import deadline_seconds

    own = {**example("iris_sklearn.json"), "metadata": {**example("iris_sklearn.json")["metadata"],
                                                         "rolling_strategy": {"progress_deadline_seconds": 45}}}
    assert alice_api.post("/api/v2/services", own, format="json").status_code == 202
    assert deadline_seconds(Service.objects.get(name="iris_sklearn")) == 45
    assert alice_api.post("/api/v2/services", example("digits_onnx.json"), format="json").status_code == 202
    assert deadline_seconds(Service.objects.get(name="digits_onnx")) == settings.FERRY_PROGRESS_DEADLINE_SECONDS
