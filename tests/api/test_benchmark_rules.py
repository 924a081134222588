"""The rules of benchmark tasks that need no load: who may do what (through the REST API), which transitions are
refused, and the runner's bookkeeping (a redelivered run, a stale attempt, the sweep of silent runners). With the
`db` fixture nothing is committed, so no run is queued: the runner is called directly where it matters."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from deployer.benchmarks import run, sweep
from services.models import BenchmarkTask, Project

from .conftest import api_client_for, example, make_member

pytestmark = pytest.mark.django_db
PATH = "/api/v2/benchmark-tasks"


def config(service: str = "iris_sklearn", **base) -> str:
    return json.dumps({"service": {"serviceName": service}, "base": {"duration": 5, **base}})


@pytest.fixture
def task(alice_api) -> BenchmarkTask:
    assert alice_api.post("/api/v2/services", example("iris_sklearn.json"), format="json").status_code == 202
    answer = alice_api.post(PATH, config(qps=5), content_type="application/json")
    assert answer.status_code == 200, answer.json()
    return BenchmarkTask.objects.get(name=answer.json()["TaskName"])


def test_a_viewer_reads_but_does_not_create_or_change(task, alice_api):
    viewer = make_member("vera", "other", role="viewer")
    from services.models import ProjectMembership

    ProjectMembership.objects.create(user=viewer, project=Project.objects.get(name="team_a"), role="viewer")
    vera = api_client_for(viewer)
    assert vera.get(f"{PATH}/local/{task.name}").json()["Status"] == "Creating"
    assert vera.get(PATH).json()["TotalCount"] == 1
    assert vera.post(PATH, config(), content_type="application/json").status_code == 403
    for verb, suffix in (("put", "/start"), ("put", "/stop"), ("delete", "")):
        assert getattr(vera, verb)(f"{PATH}/local/{task.name}{suffix}").status_code == 403, (verb, suffix)


def test_another_projects_task_is_not_found(task, bob_api):
    assert bob_api.get(PATH).json()["TotalCount"] == 0
    for verb, suffix in (("get", ""), ("get", "/report"), ("put", "/start"), ("put", "/stop"), ("delete", "")):
        answer = getattr(bob_api, verb)(f"{PATH}/local/{task.name}{suffix}")
        assert (answer.status_code, answer.json()["Code"]) == (404, "BenchmarkTaskNotFound"), (verb, suffix)


def test_transitions_that_make_no_sense_are_409(task, alice_api):
    url = f"{PATH}/local/{task.name}"
    assert alice_api.put(f"{url}/start").status_code == 409  # queued already
    assert alice_api.put(url, config(qps=9), content_type="application/json").status_code == 409
    assert alice_api.put(f"{url}/stop").status_code == 200  # not picked up yet: stopped at once
    assert BenchmarkTask.objects.get(pk=task.pk).state == "Stopped"
    assert alice_api.put(f"{url}/stop").json()["Code"] == "BenchmarkTaskNotRunning"
    other = alice_api.put(url, config("bert_tfserving"), content_type="application/json").json()
    assert other["Errors"][0]["Path"] == "service.serviceName"
    assert alice_api.put(url, config(qps=9), content_type="application/json").status_code == 200
    assert BenchmarkTask.objects.get(pk=task.pk).config["base"] == {"duration": 5, "qps": 9}
    assert alice_api.put(f"{url}/start").status_code == 200
    assert BenchmarkTask.objects.get(pk=task.pk).attempt == 2


def test_a_body_that_is_not_a_config_is_refused_by_name(alice_api):
    answer = alice_api.post(PATH, json.dumps({"base": {"qps": "fast"}, "data": {"path": "oss://x"}}),
                            content_type="application/json").json()
    assert {e["Path"] for e in answer["Errors"]} == {"service.serviceName", "base.qps", "data.path"}
    missing = alice_api.post(PATH, config("nothing"), content_type="application/json")
    assert (missing.status_code, missing.json()["Code"]) == (404, "ServiceNotFound")


def test_the_runner_refuses_to_run_twice_and_the_sweep_fails_silent_runs(task):
    assert run(task.pk, attempt=task.attempt + 1) == ""  # a stale attempt: not ours
    BenchmarkTask.objects.filter(pk=task.pk).update(state="Running", heartbeat_at=timezone.now())
    assert run(task.pk, attempt=task.attempt) == "Error"  # delivered again after its worker died
    assert BenchmarkTask.objects.get(pk=task.pk).reason == "WorkerLost"

    BenchmarkTask.objects.filter(pk=task.pk).update(state="Running", heartbeat_at=timezone.now())
    assert sweep() == 0
    assert sweep(now=timezone.now() + timedelta(seconds=16)) == 1
    swept = BenchmarkTask.objects.get(pk=task.pk)
    assert (swept.state, swept.reason) == ("Error", "WorkerLost") and swept.finished_at is not None
