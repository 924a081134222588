"""Labels and the safety lock, driven by the official EAS SDK as EAS users' scripts drive them."""

import json

import pytest
from alibabacloud_eas20210701 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException
from django.apps import apps

from services.models import Event, Service

from .conftest import example

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def labels_of(sdk, name: str) -> dict:
    described = sdk.describe_service("local", name).body
    return {label.label_key: label.label_value for label in described.labels or []}


def create(sdk, document: dict, labels: dict | None = None) -> str:
    return sdk.create_service(m.CreateServiceRequest(body=json.dumps(document), labels=labels)).body.service_name


def refused(call, *args) -> ClientException:
    with pytest.raises(ClientException) as error:
        call(*args)
    return error.value


def state(name: str) -> tuple:
    service = Service.objects.get(name=name)
    return (service.generation, service.labels, service.spec, service.desired_state, service.deletion_requested_at,
            service.safety_lock, service.versions.count(), service.cron_scaler, service.events.count())


def test_labels_come_from_the_file_and_the_query_and_change_without_a_version(alice_sdk):
    iris = {**example("iris_sklearn.json"), "labels": {"team": "search", "tier": "silver"}}
    create(alice_sdk, iris, labels={"tier": "gold"})  # the Labels parameter wins over the file
    assert labels_of(alice_sdk, "iris_sklearn") == {"team": "search", "tier": "gold"}
    config = json.loads(alice_sdk.describe_service("local", "iris_sklearn").body.service_config)
    assert config["labels"] == {"team": "search", "tier": "gold"}

    alice_sdk.update_service_label("local", "iris_sklearn", m.UpdateServiceLabelRequest(
        labels={"tier": "platinum", "owner": "alice"}))
    assert labels_of(alice_sdk, "iris_sklearn") == {"team": "search", "tier": "platinum", "owner": "alice"}

    alice_sdk.delete_service_label("local", "iris_sklearn", m.DeleteServiceLabelRequest(keys=["team", "owner"]))
    assert labels_of(alice_sdk, "iris_sklearn") == {"tier": "platinum"}

    versions = alice_sdk.list_service_versions("local", "iris_sklearn", m.ListServiceVersionsRequest()).body
    assert versions.total_count == 1
    assert Event.objects.filter(reason="ChangedLabels").count() == 2


def test_an_update_merges_labels_and_a_replacement_without_labels_keeps_them(alice_sdk):
    create(alice_sdk, example("iris_sklearn.json"), labels={"team": "search", "tier": "gold"})
    alice_sdk.update_service("local", "iris_sklearn", m.UpdateServiceRequest(
        body=json.dumps({"labels": {"tier": None, "env": "prod"}})))
    assert labels_of(alice_sdk, "iris_sklearn") == {"team": "search", "env": "prod"}

    # A whole file that says nothing of labels (a script re-sending its original file) keeps them...
    alice_sdk.update_service("local", "iris_sklearn", m.UpdateServiceRequest(
        body=json.dumps(example("iris_sklearn.json")), update_type="replace"))
    assert labels_of(alice_sdk, "iris_sklearn") == {"team": "search", "env": "prod"}
    # ...and one that gives labels sets exactly those.
    alice_sdk.update_service("local", "iris_sklearn", m.UpdateServiceRequest(
        body=json.dumps({**example("iris_sklearn.json"), "labels": {"env": "staging"}}), update_type="replace"))
    assert labels_of(alice_sdk, "iris_sklearn") == {"env": "staging"}
    versions = alice_sdk.list_service_versions("local", "iris_sklearn", m.ListServiceVersionsRequest()).body
    assert versions.total_count == 1


def test_list_services_filters_by_every_label_given(alice_sdk):
    create(alice_sdk, example("iris_sklearn.json"), labels={"team": "search", "env": "prod"})
    create(alice_sdk, example("digits_onnx.json"), labels={"team": "search", "env": "dev"})
    create(alice_sdk, example("bert_tfserving.json"), labels={"team": "ads", "a__contains": "x"})

    def names(label: dict) -> list[str]:
        listed = alice_sdk.list_services(m.ListServicesRequest(label=label, sort="ServiceName", order="asc")).body
        return [service.service_name for service in listed.services]

    assert names({"team": "search"}) == ["digits_onnx", "iris_sklearn"]
    assert names({"team": "search", "env": "prod"}) == ["iris_sklearn"]
    assert names({"team": "nobody"}) == []
    # A key is a key, never an operator of the query.
    assert names({"a__contains": "x"}) == ["bert_tfserving"]
    described = alice_sdk.list_services(m.ListServicesRequest(label={"env": "dev"})).body.services[0]
    assert [(label.label_key, label.label_value) for label in described.labels] == [("env", "dev"),
                                                                                     ("team", "search")]


def test_bad_labels_are_refused_naming_them_and_change_nothing(alice_sdk):
    create(alice_sdk, example("iris_sklearn.json"), labels={"team": "search"})
    before = state("iris_sklearn")

    bad_key = refused(alice_sdk.update_service_label, "local", "iris_sklearn",
                      m.UpdateServiceLabelRequest(labels={"a,b": "x", "fine": "yes"}))
    assert (bad_key.status_code, bad_key.code) == (400, "InvalidParameter")
    assert "Labels.a,b" in bad_key.message
    missing = refused(alice_sdk.delete_service_label, "local", "iris_sklearn",
                      m.DeleteServiceLabelRequest(keys=["team", "nope"]))
    assert (missing.status_code, missing.code) == (404, "LabelNotFound")
    assert "nope" in missing.message
    no_keys = refused(alice_sdk.delete_service_label, "local", "iris_sklearn", m.DeleteServiceLabelRequest())
    assert no_keys.status_code == 400 and "Keys" in no_keys.message
    assert state("iris_sklearn") == before

    bad_create = refused(alice_sdk.create_service, m.CreateServiceRequest(
        body=json.dumps({**example("digits_onnx.json"), "labels": {"": "x"}})))
    assert bad_create.status_code == 400 and "labels." in bad_create.message
    assert not Service.objects.filter(name="digits_onnx").exists()


def test_a_dangerous_lock_refuses_delete_stop_and_restart_but_not_updates(alice_sdk):
    create(alice_sdk, example("iris_sklearn.json"))
    alice_sdk.update_service_safety_lock("local", "iris_sklearn", m.UpdateServiceSafetyLockRequest(lock="dangerous"))
    assert alice_sdk.describe_service("local", "iris_sklearn").body.safety_lock == "dangerous"
    before = state("iris_sklearn")

    for call, args in ((alice_sdk.delete_service, ()), (alice_sdk.stop_service, ()),
                       (alice_sdk.restart_service, ()),
                       (alice_sdk.delete_service_instances, (m.DeleteServiceInstancesRequest(instance_list="x"),))):
        error = refused(call, "local", "iris_sklearn", *args)
        assert (error.status_code, error.code) == (409, "ServiceLocked"), call
        assert 'SafetyLock "dangerous"' in error.message
    assert state("iris_sklearn") == before

    alice_sdk.update_service("local", "iris_sklearn", m.UpdateServiceRequest(body='{"metadata": {"instance": 3}}'))
    assert alice_sdk.describe_service("local", "iris_sklearn").body.total_instance == 3

    alice_sdk.update_service_safety_lock("local", "iris_sklearn", m.UpdateServiceSafetyLockRequest(lock="none"))
    assert alice_sdk.delete_service("local", "iris_sklearn").status_code == 202


def test_an_all_lock_refuses_every_change_until_it_is_lifted(alice_sdk):
    create(alice_sdk, example("iris_sklearn.json"))
    alice_sdk.update_service_safety_lock("local", "iris_sklearn", m.UpdateServiceSafetyLockRequest(lock="all"))
    before = state("iris_sklearn")

    changes = (
        (alice_sdk.update_service, m.UpdateServiceRequest(body='{"metadata": {"instance": 3}}')),
        (alice_sdk.update_service_label, m.UpdateServiceLabelRequest(labels={"team": "x"})),
        (alice_sdk.create_service_auto_scaler, m.CreateServiceAutoScalerRequest(
            min=1, max=3, scale_strategies=[m.CreateServiceAutoScalerRequestScaleStrategies(metric_name="qps",
                                                                                            threshold=5)])),
        (alice_sdk.create_service_cron_scaler, m.CreateServiceCronScalerRequest(
            scale_jobs=[m.CreateServiceCronScalerRequestScaleJobs(name="night", schedule="0 0 22 * * *",
                                                                  target_size=0)])),
    )
    for call, request in changes:
        error = refused(call, "local", "iris_sklearn", request)
        assert (error.status_code, error.code) == (409, "ServiceLocked"), call
    assert refused(alice_sdk.start_service, "local", "iris_sklearn").code == "ServiceLocked"
    assert state("iris_sklearn") == before
    assert alice_sdk.describe_service("local", "iris_sklearn").body.service_name == "iris_sklearn"  # reads work

    bad = refused(alice_sdk.update_service_safety_lock, "local", "iris_sklearn",
                  m.UpdateServiceSafetyLockRequest(lock="everything"))
    assert (bad.status_code, bad.code) == (400, "InvalidParameter") and "Lock" in bad.message
    alice_sdk.update_service_safety_lock("local", "iris_sklearn", m.UpdateServiceSafetyLockRequest(lock="none"))
    alice_sdk.update_service_label("local", "iris_sklearn", m.UpdateServiceLabelRequest(labels={"team": "x"}))
    assert labels_of(alice_sdk, "iris_sklearn") == {"team": "x"}
    assert list(Event.objects.filter(reason="SetSafetyLock").values_list("message", flat=True).order_by("id")) == [
        'Set the safety lock of iris_sklearn to "all" (was "none")',
        'Set the safety lock of iris_sklearn to "none" (was "all")']


@pytest.mark.django_db
def test_the_migration_moves_labels_out_of_stored_files(alice_api):
    from importlib import import_module

    assert alice_api.post("/api/v2/services", example("iris_sklearn.json"), format="json").status_code == 202
    # As a service created before labels were the service's own was stored:
    Service.objects.filter(name="iris_sklearn").update(
        spec={**Service.objects.get(name="iris_sklearn").spec, "labels": {"team": "old", "env": "prod"}},
        labels={"team": "query"})
    import_module("services.migrations.0007_service_safety_lock_and_labels").labels_out_of_spec(apps, None)
    service = Service.objects.get(name="iris_sklearn")
    assert "labels" not in service.spec
    assert service.labels == {"team": "query", "env": "prod"}


@pytest.mark.django_db
def test_the_console_honours_the_lock_and_still_shows_the_token(alice, alice_api, client):
    assert alice_api.post("/api/v2/services", example("iris_sklearn.json"), format="json").status_code == 202
    assert alice_api.put("/api/v2/services/local/iris_sklearn/lock", {"Lock": "all"},
                         format="json").status_code == 200
    before = state("iris_sklearn")
    client.force_login(alice)
    for action in ("stop", "delete"):
        response = client.post(f"/services/local/iris_sklearn/actions/{action}/", follow=True)
        assert response.status_code == 200, action
        assert 'SafetyLock &quot;all&quot;' in response.content.decode(), action
    scaled = client.post("/services/local/iris_sklearn/actions/scale/", {"instances": 4})
    assert scaled.status_code == 422 and 'SafetyLock &quot;all&quot;' in scaled.content.decode()  # and says why
    assert state("iris_sklearn") == before
    # Showing the token reads on demand: no lock refuses it.
    token = client.post("/services/local/iris_sklearn/actions/token/")
    assert token.status_code == 200
    assert alice_api.get("/api/v2/services/local/iris_sklearn").json()["AccessToken"] in token.content.decode()
