"""The local cluster end to end: real agent, real model-server processes, real HTTP to the instances."""

import os
import signal

import psutil
import pytest
import requests
from django.utils import timezone

from processors.demo import demo_service_files, digits_v2_request
from services.models import Project, Service
from services.selectors import service_token
from services.writes import service_create, service_delete, service_start, service_stop, service_update

from .conftest import converge

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def create(document: dict) -> Service:
    return service_create(actor=None, project=Project.objects.get(name="default"), document=document)


def demo_file(demo_models, name: str) -> dict:
    return next(f for f in demo_service_files(demo_models) if f["name"] == name)


def running(service) -> bool:
    return service is not None and service.phase == "Running"


def ready_ports(service: Service) -> list[int]:
    return sorted(service.instances.filter(ready=True).values_list("port", flat=True))


def reasons(service: Service) -> list[str]:
    return list(service.events.values_list("reason", flat=True))


def test_it_serves_iris_and_digits_over_v1_and_v2(local_cluster, demo_models):
    iris = converge(create(demo_file(demo_models, "demo_iris")), running, what="demo_iris Running")
    digits = converge(create(demo_file(demo_models, "demo_digits")), running, what="demo_digits Running")

    (iris_port,) = ready_ports(iris)
    # Called directly, as EAS's direct connection does: an instance asks for its service's token on every route.
    v1 = requests.post(f"http://127.0.0.1:{iris_port}/v1/models/demo_iris:predict",
                       json={"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
                       headers={"Authorization": service_token(iris)}, timeout=10)
    assert v1.json()["predictions"] == [0, 2]  # setosa, virginica

    from sklearn.datasets import load_digits
    (digits_port,) = ready_ports(digits)
    v2 = requests.post(f"http://127.0.0.1:{digits_port}/v2/models/demo_digits/infer",
                       json=digits_v2_request(7), headers={"Authorization": f"Bearer {service_token(digits)}"},
                       timeout=10)
    assert v2.json()["outputs"][0]["data"][0] == int(load_digits().target[7])

    assert {"FetchedModel", "AppliedLimits", "InstanceReady", "BecameRunning"} <= set(reasons(iris))
    ready = next(c for c in iris.conditions if c["type"] == "Ready")
    assert ready["status"] == "True" and iris.observed_generation == iris.generation


def test_it_restarts_a_killed_instance_and_says_so(local_cluster, demo_models):
    iris = converge(create(demo_file(demo_models, "demo_iris")), running)
    instance = iris.instances.get()
    pid = iris.local_instances.get().pid
    os.kill(pid, signal.SIGKILL)
    iris = converge(iris, lambda s: s.instances.get().restart_count == 1 and running(s),
                    what="the instance to restart")
    restarted = iris.instances.get()
    assert restarted.name == instance.name and "signal 9" in restarted.last_exit_reason
    warning = iris.events.get(reason="InstanceRestarted")
    assert warning.type == "Warning" and instance.name in warning.message


def test_it_fails_a_bad_model_path_with_a_reason_naming_it(local_cluster, demo_models):
    bad = {**demo_file(demo_models, "demo_iris"), "name": "lost", "model_path": "file:///nowhere/model.joblib"}
    service = converge(create(bad), lambda s: s.phase == "Failed")
    assert service.status_reason == "ModelFetchFailed" and "/nowhere/model.joblib" in service.status_message
    assert not service.local_instances.exists()


def test_it_backs_off_a_crash_looping_processor(local_cluster):
    crashing = {"name": "crasher", "processor": "custom",
                "containers": [{"image": "none", "script": "echo starting; exit 3", "port": 8000}]}
    service = converge(create(crashing), lambda s: s.instances.filter(restart_count__gte=2).exists(),
                       what="two restarts")
    assert service.phase == "Failed" and "code 3" in service.status_message
    assert "BackOff" in reasons(service)
    degraded = next(c for c in service.conditions if c["type"] == "Degraded")
    assert degraded["status"] == "True"


def test_it_converges_scale_stop_start_and_delete(local_cluster, demo_models):
    iris = converge(create(demo_file(demo_models, "demo_iris")), running)
    service_update(actor=None, service=iris, patch={"metadata": {"instance": 2}})
    iris = converge(iris, lambda s: running(s) and len(ready_ports(s)) == 2, what="two ready instances")

    service_stop(actor=None, service=iris)
    iris = converge(iris, lambda s: s.phase == "Stopped" and s.status_reason == "Stopped", what="stopped")
    assert set(iris.instances.values_list("state", flat=True)) <= {"Terminated"}, "Stopped while one still runs"
    # An instance that ended after the reconcile retired the others is listed as Terminated until the reconcile
    # its end queues; then the list is empty.
    converge(iris, lambda s: not s.instances.exists(), what="the stopped instances to be removed")

    service_start(actor=None, service=iris)
    iris = converge(iris, lambda s: running(s) and len(ready_ports(s)) == 2, what="started again")

    pids = list(iris.local_instances.values_list("pid", flat=True))
    service_delete(actor=None, service=iris)
    converge(iris, lambda s: s is None, what="the service to be deleted")
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in pids)


def test_it_rolls_a_new_version_out_before_stopping_the_old_one(local_cluster, demo_models):
    iris = converge(create(demo_file(demo_models, "demo_iris")), running)
    (old_port,) = ready_ports(iris)
    service_update(actor=None, service=iris, patch={"warm_up_data_path": None})  # changes the instance shape
    assert iris.versions.count() == 2
    ready_counts = []

    def rolled_out(service):
        ready_counts.append(service.instances.filter(ready=True).count())
        versions = set(service.instances.filter(ready=True).values_list("version__number", flat=True))
        return running(service) and versions == {2} and not service.instances.filter(version__number=1).exists()

    iris = converge(iris, rolled_out, what="version 2 to take over and version 1 to stop")
    assert ready_ports(iris) != [old_port]
    assert min(ready_counts) >= 1, "the old instance must serve until the new one is ready"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{old_port}/v2/health/ready", timeout=2)  # the old instance is gone


def test_it_leaves_no_orphan_or_duplicate_after_the_agent_is_killed(local_cluster, demo_models):
    iris = converge(create(demo_file(demo_models, "demo_iris")), running)
    pid = iris.local_instances.get().pid
    (agent,) = local_cluster.agents
    agent.send(signal.SIGKILL)
    agent.wait()
    assert psutil.pid_exists(pid), "instances keep serving while the agent is down"
    restarted_at = timezone.now()
    local_cluster.start_agent()
    iris = converge(iris, lambda s: running(s) and s.local_instances.get().heartbeat_at > restarted_at,
                    what="the new agent to report")
    assert iris.local_instances.get().pid == pid  # adopted, not started twice
    # Only this cluster's processes: other test runs on the machine may serve a demo_iris of their own.
    servers = local_cluster.processes()
    assert [p.pid for p in servers] == [pid]


def test_it_restarts_one_instance_and_serves_its_logs_through_the_api(local_cluster, demo_models, alice_api):
    from services.models import ProjectMembership
    from django.contrib.auth import get_user_model

    iris = converge(create(demo_file(demo_models, "demo_iris")), running)
    ProjectMembership.objects.create(user=get_user_model().objects.get(username="alice"),
                                     project=iris.project, role="developer")
    api = "/api/v2/services/local/demo_iris"
    (instance,) = alice_api.get(f"{api}/instances").json()["Instances"]
    assert (instance["Status"], instance["ReadyProcesses"], instance["InstancePort"]) == (
        "Running", 1, ready_ports(iris)[0])

    logs = alice_api.get(f"{api}/logs", {"InstanceName": instance["InstanceName"], "Keyword": "warmed up"}).json()
    assert logs["TotalCount"] == 1 and "warmed up with 2 requests" in logs["Logs"][0]
    later = alice_api.get(f"{api}/logs", {"Keyword": "warmed up", "StartTime": "2999-01-01 00:00:00"}).json()
    assert later["TotalCount"] == 0
    every = alice_api.get(f"{api}/logs", {"PageSize": 5}).json()
    assert every["TotalCount"] > 5 and len(every["Logs"]) == 5
    assert every["Logs"][0].startswith(instance["InstanceName"] + ": ")

    pid = iris.local_instances.get().pid
    assert alice_api.delete(f"{api}/instances", QUERY_STRING=f"InstanceList={instance['InstanceName']}"
                            ).status_code == 202
    iris = converge(iris, lambda s: running(s) and s.local_instances.get().pid not in (None, pid),
                    what="the instance to be restarted")
    assert "RestartedInstance" in reasons(iris)
