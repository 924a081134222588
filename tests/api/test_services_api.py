"""The EAS-compatible REST API: validation, lifecycle, lists, traffic, scaling and observation endpoints."""

import json

import pytest
from rest_framework.test import APIClient

from services.models import Event, Service, Version

from .conftest import example

pytestmark = pytest.mark.django_db
SERVICE = "/api/v2/services/local/iris_sklearn"


def create(api, document, query: str = ""):
    return api.post(f"/api/v2/services{query}", document, format="json")


@pytest.fixture
def iris(alice_api):
    assert create(alice_api, example("iris_sklearn.json")).status_code == 202
    return Service.objects.get(name="iris_sklearn")


def error_paths(response) -> set[str]:
    return {error["Path"] for error in response.json()["Errors"]}


def test_it_rejects_a_bad_file_with_every_problem_and_keeps_nothing(alice_api):
    response = create(alice_api, {"name": "9lives", "processor": "sklearn", "model_path": "ftp://m",
                                  "metadata": {"instance": "two", "memory": -5, "gpu": 1.5}, "colour": "red"})
    assert response.status_code == 400
    body = response.json()
    assert body["Code"] == "InvalidServiceConfig" and body["RequestId"]
    assert {"name", "model_path", "metadata.instance", "metadata.memory", "metadata.gpu"} <= error_paths(response)
    assert "colour" in body["Message"]
    assert (Service.objects.count(), Version.objects.count(), Event.objects.count()) == (0, 0, 0)


def test_it_rejects_a_body_that_is_not_a_json_object(alice_api):
    not_json = alice_api.generic("POST", "/api/v2/services", "{not json", content_type="application/json")
    assert not_json.status_code == 400 and not_json.json()["Code"] == "InvalidBody"
    a_list = create(alice_api, [1, 2])
    assert a_list.status_code == 400 and a_list.json()["Code"] == "InvalidServiceConfig"
    assert Service.objects.count() == 0


def test_it_names_an_unknown_cluster(alice_api):
    response = create(alice_api, {**example("iris_sklearn.json"),
                                  "metadata": {**example("iris_sklearn.json")["metadata"], "resource": "gpu_pool"}})
    assert response.status_code == 400
    assert error_paths(response) == {"metadata.resource"}
    assert "gpu_pool" in response.json()["Message"]


def test_it_refuses_a_second_service_with_the_same_name(alice_api, iris):
    response = create(alice_api, example("iris_sklearn.json"))
    assert response.status_code == 409
    assert Service.objects.count() == 1


def test_it_keeps_the_service_unchanged_when_an_update_is_invalid(alice_api, iris):
    before = (iris.spec, iris.generation, iris.versions.count())
    response = alice_api.put(SERVICE, {"metadata": {"instance": -1, "cpu": "many"}}, format="json")
    assert response.status_code == 400
    assert error_paths(response) == {"metadata.instance", "metadata.cpu"}
    iris.refresh_from_db()
    assert (iris.spec, iris.generation, iris.versions.count()) == before


def test_it_replaces_a_whole_file_and_refuses_renames(alice_api, iris):
    replacement = {**example("iris_sklearn.json"), "metadata": {"instance": 1, "cpu": 2, "memory": 2048}}
    assert alice_api.put(f"{SERVICE}?UpdateType=replace", replacement, format="json").status_code == 202
    iris.refresh_from_db()
    assert (iris.instance_count, iris.spec["metadata"]["cpu"], iris.versions.count()) == (1, 2, 2)
    renamed = alice_api.put(SERVICE, {"name": "other"}, format="json")
    assert renamed.status_code == 400 and error_paths(renamed) == {"name"}


def test_it_reconciles_start_stop_restart_and_delete(alice_api, iris, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.put(f"{SERVICE}/stop").status_code == 202
    iris.refresh_from_db()
    assert iris.desired_state == "stopped"
    assert iris.observed_generation == iris.generation
    ready = next(c for c in iris.conditions if c["type"] == "Ready")
    assert (iris.phase, ready["status"], ready["reason"]) == ("Stopped", "False", "Stopped")

    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.put(f"{SERVICE}/start").status_code == 202
        assert alice_api.put(f"{SERVICE}/restart").status_code == 202
    iris.refresh_from_db()
    assert iris.desired_state == "running" and iris.restart_requested_at is not None
    reasons = [event["Reason"] for event in alice_api.get(f"{SERVICE}/events").json()["Events"]]
    requested = [reason for reason in reasons if reason.endswith("Requested")]
    assert requested == ["RestartRequested", "StartRequested", "StopRequested"]
    # Starting made the reconciler fetch the example's placeholder model, which does not exist here.
    iris.refresh_from_db()
    assert (iris.phase, iris.status_reason) == ("Failed", "ModelFetchFailed")

    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.delete(SERVICE).status_code == 202
    assert not Service.objects.filter(name="iris_sklearn").exists()
    assert Version.objects.count() == 0


def test_it_filters_sorts_and_pages_lists(alice_api):
    for name in ("iris_sklearn.json", "bert_tfserving.json", "digits_onnx.json"):
        create(alice_api, example(name), query='?Labels={"team":"vision"}' if "digits" in name else "")
    names = lambda response: [s["ServiceName"] for s in response.json()["Services"]]  # noqa: E731
    assert names(alice_api.get("/api/v2/services?Filter=SKLEARN")) == ["iris_sklearn"]
    assert names(alice_api.get("/api/v2/services?GroupName=bert")) == ["bert_tfserving"]
    assert names(alice_api.get("/api/v2/services?Label=" + json.dumps({"team": "vision"}))) == ["digits_onnx"]
    ordered = alice_api.get("/api/v2/services?Sort=ServiceName&Order=asc&PageSize=2&PageNumber=2")
    assert names(ordered) == ["iris_sklearn"] and ordered.json()["TotalCount"] == 3
    bad = alice_api.get("/api/v2/services?Sort=colour&PageSize=0")
    assert bad.status_code == 400 and error_paths(bad) == {"PageSize", "Sort"}


def test_it_pages_and_filters_events(alice_api, iris):
    for count in (3, 4, 5):
        alice_api.put(SERVICE, {"metadata": {"instance": count}}, format="json")
    page = alice_api.get(f"{SERVICE}/events?PageSize=2&PageNum=2").json()
    assert (page["TotalCount"], page["TotalPageNum"], page["PageNum"], len(page["Events"])) == (4, 2, 2, 2)
    assert alice_api.get(f"{SERVICE}/events?EventType=Warning").json()["Events"] == []
    assert alice_api.get(f"{SERVICE}/events?StartTime=2999-01-01 00:00:00").json()["TotalCount"] == 0
    assert alice_api.get(f"{SERVICE}/events?StartTime=yesterday").status_code == 400


def test_events_name_the_user_who_acted_and_none_for_the_reconciler(alice_api, alice, iris,
                                                                   django_capture_on_commit_callbacks):
    assert alice_api.put(SERVICE, {"metadata": {"instance": 3}}, format="json").status_code == 202  # scale
    canary = alice_api.put(f"{SERVICE}?Strategy=canary&CanaryWeight=10",
                           {"model_path": "file:///srv/models/iris/v2.joblib"}, format="json")  # update
    assert canary.status_code == 202
    assert alice_api.put(f"{SERVICE}/rollout", {"CanaryWeight": 30}, format="json").status_code == 202
    with django_capture_on_commit_callbacks(execute=True):  # the reconciler runs after the stop
        assert alice_api.put(f"{SERVICE}/stop").status_code == 202
    events = alice_api.get(f"{SERVICE}/events?PageSize=100").json()["Events"]
    actors = {}
    for event in events:
        actors.setdefault(event["Reason"], set()).add(event["Actor"])
    by_alice = {"CreatedService", "UpdatedScaling", "CreatedVersion", "StartedRollout", "SetCanaryWeight",
                "StopRequested"}
    assert {reason: actors.get(reason) for reason in by_alice} == {reason: {"alice"} for reason in by_alice}
    by_ferry = [event for event in events if event["Reason"] not in by_alice]
    assert "BecameStopped" in {event["Reason"] for event in by_ferry}  # the reconciler's
    assert {event["Actor"] for event in by_ferry} == {""}
    assert {"Time", "Type", "Reason", "Message", "InstanceName"} <= set(events[0])  # the EAS fields stay

    alice.delete()  # the name outlives the user
    assert Event.objects.filter(service=iris, reason="CreatedService").get().actor == "alice"


def test_it_sets_weights_per_version(alice_api, iris):
    alice_api.put(SERVICE, {"model_path": "file:///srv/models/iris/v2.joblib"}, format="json")
    uneven = alice_api.put(f"{SERVICE}/traffic", {"Weights": {"1": 80, "2": 30}}, format="json")
    assert uneven.status_code == 400 and "sum to 100" in uneven.json()["Message"]
    unknown = alice_api.put(f"{SERVICE}/traffic", {"Weights": {"7": 100}}, format="json")
    assert unknown.status_code == 400
    assert alice_api.put(f"{SERVICE}/traffic", {"Weights": {"1": 80, "2": 20}}, format="json").status_code == 202
    traffic = alice_api.get(f"{SERVICE}/traffic").json()
    assert traffic["Weights"] == {"2": 20, "1": 80}
    described = alice_api.get(SERVICE).json()
    assert described["Traffic"] == [{"Version": 1, "Weight": 80}, {"Version": 2, "Weight": 20}]
    assert described["CurrentVersion"] == 1


def test_it_validates_cron_jobs_mirrors_and_autoscalers_by_path(alice_api, iris):
    cron = alice_api.post(f"{SERVICE}/cronscaler", {"ScaleJobs": [
        {"Name": "a", "Schedule": "0 18 * * *", "TargetSize": 2},
        {"Name": "a", "Schedule": "0 0 18 * * *", "TargetSize": 2, "TimeZone": "Mars/Olympus"}]}, format="json")
    assert cron.status_code == 400
    assert error_paths(cron) == {"ScaleJobs[0].Schedule", "ScaleJobs[1].Name", "ScaleJobs[1].TimeZone"}
    assert alice_api.post(f"{SERVICE}/mirror", {"Target": ["iris_sklearn"], "Ratio": 10},
                          format="json").status_code == 400
    missing = alice_api.post(f"{SERVICE}/mirror", {"Target": ["nobody"], "Ratio": 10}, format="json")
    assert missing.status_code == 400 and "nobody" in missing.json()["Message"]
    scaler = alice_api.post(f"{SERVICE}/autoscaler", {"min": 5, "max": 2, "scaleStrategies": []}, format="json")
    assert scaler.status_code == 400 and all(p.startswith("autoscaler") for p in error_paths(scaler))
    iris.refresh_from_db()
    assert (iris.cron_scaler, iris.mirror, iris.autoscaler) == (None, None, None)


def test_it_reports_instances_logs_and_endpoints_honestly(alice_api, iris):
    assert alice_api.get(f"{SERVICE}/instances").json()["Instances"] == []
    assert alice_api.get(f"{SERVICE}/logs").json()["Logs"] == []
    restart = alice_api.delete(f"{SERVICE}/instances?InstanceList=iris-v1-0")
    assert restart.status_code == 404 and restart.json()["Code"] == "InstanceNotFound"
    endpoints = alice_api.get(f"{SERVICE}/endpoints").json()
    assert endpoints["Endpoints"][0]["IntranetEndpoints"] == ["http://127.0.0.1:8080/api/predict/iris_sklearn"]
    assert endpoints["AccessToken"] == alice_api.get(SERVICE).json()["AccessToken"]


def test_it_lists_clusters_as_resource_groups(alice_api, iris):
    resources = alice_api.get("/api/v2/resources").json()["Resources"]
    local = next(r for r in resources if r["ResourceId"] == "local")
    assert local["CpuCount"] >= 1 and local["ExtraData"]["Default"] is True
    assert local["ExtraData"]["ServiceCount"] == 1
    assert alice_api.get("/api/v2/resources/local/local").json()["ResourceName"] == "local"
    assert alice_api.get("/api/v2/resources/local/nowhere").status_code == 404


def test_it_answers_401_in_eas_form_without_credentials():
    response = APIClient().get("/api/v2/services")
    assert response.status_code == 401
    assert set(response.json()) == {"Code", "Message", "RequestId"}
    assert response["x-acs-request-id"] == response.json()["RequestId"]
