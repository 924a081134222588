"""The API's weights: `Weight` / `Weights` / `Traffic` are what was asked (as EAS and Ferry always showed them
right after a write), `AppliedWeight` / `AppliedWeights` / `AppliedTraffic` what the reconciler applied and the
gateway serves. And `PUT .../canary`, the one decision of what a canary does (services.writes.canary_set).

django_db tests run no on-commit hook, so no reconcile runs after a write here: what is applied stays as it was.
"""

import pytest

from services.models import Service

from .conftest import example

pytestmark = pytest.mark.django_db

SERVICE = "/api/v2/services/local/iris_sklearn"
NEW_MODEL = {"model_path": "file:///srv/models/iris/v2.joblib"}


@pytest.fixture
def iris(alice_api):
    assert alice_api.post("/api/v2/services", example("iris_sklearn.json"), format="json").status_code == 202
    return Service.objects.get(name="iris_sklearn")


def test_a_write_shows_what_was_asked_and_what_is_applied_apart(alice_api, iris):
    alice_api.put(SERVICE, NEW_MODEL, format="json")
    assert alice_api.put(f"{SERVICE}/traffic", {"Weights": {"1": 80, "2": 20}}, format="json").status_code == 202

    traffic = alice_api.get(f"{SERVICE}/traffic").json()
    assert traffic["Weights"] == {"1": 80, "2": 20} and traffic["AppliedWeights"] == {"1": 100, "2": 0}
    described = alice_api.get(SERVICE).json()
    assert described["Traffic"] == [{"Version": 1, "Weight": 80}, {"Version": 2, "Weight": 20}]
    assert described["AppliedTraffic"] == [{"Version": 1, "Weight": 100}]
    versions = alice_api.get(f"{SERVICE}/versions").json()["Versions"]
    assert {(v["ImageId"], v["Weight"], v["AppliedWeight"]) for v in versions} == {(1, 80, 100), (2, 20, 0)}
    rollout = alice_api.get(f"{SERVICE}/rollout").json()
    assert rollout["Weights"] == {"1": 80, "2": 20} and rollout["AppliedWeights"] == {"1": 100, "2": 0}


def test_while_a_rollout_decides_the_weights_shown_are_the_applied_ones(alice_api, iris):
    alice_api.put(SERVICE, NEW_MODEL, format="json")  # a rolling rollout of version 2, not ready

    traffic = alice_api.get(f"{SERVICE}/traffic").json()
    assert traffic["Weights"] == traffic["AppliedWeights"] == {"1": 100, "2": 0}


def test_the_canary_endpoint_refuses_during_a_rolling_rollout(alice_api, iris):
    alice_api.put(SERVICE, NEW_MODEL, format="json")
    before = Service.objects.get(pk=iris.pk)

    refused = alice_api.put(f"{SERVICE}/canary", {"Weight": 30}, format="json")
    assert refused.status_code == 409 and refused.json()["Code"] == "RolloutInProgress"
    assert refused.json()["Message"] == ("iris_sklearn has a rolling rollout in progress (Progressing): use promote, "
                                         "rollback, switch or finish.")
    after = Service.objects.get(pk=iris.pk)
    assert (after.rollout, after.generation) == (before.rollout, before.generation)


def test_the_canary_endpoint_sets_shares_with_no_rollout_and_checks_its_body(alice_api, iris):
    lone = alice_api.put(f"{SERVICE}/canary", {"Weight": 30}, format="json")
    assert lone.status_code == 409 and lone.json()["Code"] == "NothingToCompare"
    alice_api.put(SERVICE, NEW_MODEL, format="json")
    Service.objects.filter(pk=iris.pk).update(rollout=None)

    bad = alice_api.put(f"{SERVICE}/canary", {"Weight": 130}, format="json")
    assert bad.status_code == 400 and "Weight" in str(bad.json())
    done = alice_api.put(f"{SERVICE}/canary", {"Weight": 30}, format="json")
    assert done.status_code == 202 and done.json()["Message"] == "Canary: version 2 gets 30 %, version 1 70 %."
    assert alice_api.get(f"{SERVICE}/traffic").json()["Weights"] == {"1": 70, "2": 30}
