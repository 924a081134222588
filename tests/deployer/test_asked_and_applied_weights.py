"""Traffic as asked and as applied, kept apart as Kubernetes keeps spec and status: writes set
`Version.requested_weight`, only the reconciler sets `Version.weight`, and the route publishes what was applied.

No agent runs here: instances never start, which is all a steady plan needs (it does not wait for readiness),
and a rollout of a service at zero instances ends at its first reconcile.
"""

import json

import pytest

from deployer.reconcile import reconcile
from deployer.routing import ROUTES_KEY, publish_route
from services.models import Project, Service
from services.writes import (
    canary_set, rollout_set_canary_weight, rollout_switch, service_create, service_update, version_rollback,
    version_weights_set)
from services.errors import Conflict

pytestmark = pytest.mark.django_db

SLEEPER = {"name": "sleeper", "processor": "custom",
           "containers": [{"image": "none", "script": "sleep 600", "port": 8000}]}


def new_shape(seconds: int) -> dict:
    return {"containers": [{"image": "none", "script": f"sleep {seconds}", "port": 8000}]}


def two_versions(**update) -> Service:
    """sleeper with version 2 made by an update (rolled out by `update`'s strategy), reconciled once."""
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=dict(SLEEPER))
    reconcile(service.pk)
    service_update(actor=None, service=Service.objects.get(pk=service.pk), patch=new_shape(601), **update)
    reconcile(service.pk)
    return Service.objects.get(pk=service.pk)


def asked(service: Service) -> dict[int, int | None]:
    return dict(service.versions.values_list("number", "requested_weight"))


def applied(service: Service) -> dict[int, int]:
    return dict(service.versions.values_list("number", "weight"))


def published(routes) -> dict[int, int]:
    return {v["number"]: v["weight"] for v in json.loads(routes.hget(ROUTES_KEY, "sleeper"))["versions"]}


def test_a_users_weights_are_asked_and_applied_only_by_a_reconcile(routes):
    service = two_versions()
    assert applied(service) == {1: 100, 2: 0}

    version_weights_set(actor=None, service=service, weights={1: 80, 2: 20})
    assert asked(service) == {1: 80, 2: 20}
    assert applied(service) == {1: 100, 2: 0}  # the write does not touch what is applied
    publish_route(service.pk)
    assert published(routes) == {1: 100, 2: 0}  # the route is what was applied

    reconcile(service.pk)
    assert applied(service) == {1: 80, 2: 20} and asked(service) == {1: 80, 2: 20}
    assert published(routes) == {1: 80, 2: 20}


def test_a_rollout_is_asked_for_not_a_share_and_a_reconcile_leaves_the_ask_alone():
    service = two_versions(strategy="canary", canary_weight=30)
    assert service.rollout["state"] == "Progressing"
    assert asked(service) == {1: None, 2: None}  # the rollout decides
    assert applied(service) == {1: 100, 2: 0}  # the canary is not ready: no traffic

    rollout_set_canary_weight(actor=None, service=service, weight=50)
    reconcile(service.pk)
    assert asked(service) == {1: None, 2: None}
    assert Service.objects.get(pk=service.pk).rollout["canary_weight"] == 50


def test_the_end_of_a_rollout_sets_the_asked_weights():
    service = service_create(actor=None, project=Project.objects.get(name="default"),
                             document={**SLEEPER, "metadata": {"instance": 0}})
    reconcile(service.pk)
    service_update(actor=None, service=Service.objects.get(pk=service.pk), patch=new_shape(601))
    assert asked(service) == {1: None, 2: None}

    reconcile(service.pk)  # at zero instances a rolling rollout has nothing to wait for
    service = Service.objects.get(pk=service.pk)
    assert service.rollout is None and service.last_rolled_out_version == 2
    assert asked(service) == {1: 0, 2: 100} and applied(service) == {1: 0, 2: 100}
    assert service.versions.get(number=2).asked_weight == 100


def test_a_rollback_and_a_switch_ask_and_the_reconcile_applies():
    service = two_versions(strategy="blue-green")
    Service.objects.filter(pk=service.pk).update(
        rollout={**service.rollout, "state": "AwaitingSwitch"})  # as when green is ready

    rollout_switch(actor=None, service=Service.objects.get(pk=service.pk))
    assert asked(service) == {1: 0, 2: 100} and applied(service) == {1: 100, 2: 0}
    reconcile(service.pk)
    assert applied(service) == {1: 0, 2: 100}

    version_rollback(actor=None, service=Service.objects.get(pk=service.pk), number=1)
    assert asked(service) == {1: 100, 2: 0} and applied(service) == {1: 0, 2: 100}
    reconcile(service.pk)
    assert applied(service) == {1: 100, 2: 0}


def test_canary_set_is_refused_during_a_rolling_rollout_and_changes_nothing():
    service = two_versions()
    before = (service.rollout, service.generation, asked(service), applied(service))

    with pytest.raises(Conflict) as refused:
        canary_set(actor=None, service=service, percent=30)
    assert refused.value.code == "RolloutInProgress"
    assert refused.value.message == ("sleeper has a rolling rollout in progress (Progressing): use promote, "
                                     "rollback, switch or finish.")
    service = Service.objects.get(pk=service.pk)
    assert (service.rollout, service.generation, asked(service), applied(service)) == before


def test_canary_set_moves_a_canary_and_with_no_rollout_asks_for_shares():
    service = two_versions(strategy="canary", canary_weight=10)
    canary_set(actor=None, service=service, percent=40)
    assert Service.objects.get(pk=service.pk).rollout["canary_weight"] == 40

    Service.objects.filter(pk=service.pk).update(rollout=None)
    canary_set(actor=None, service=Service.objects.get(pk=service.pk), percent=25)
    assert asked(service) == {1: 75, 2: 25}


def test_canary_set_needs_two_versions():
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=dict(SLEEPER))
    with pytest.raises(Conflict) as refused:
        canary_set(actor=None, service=service, percent=30)
    assert refused.value.code == "NothingToCompare"


def test_pruning_keeps_a_version_asked_for_before_its_share_is_applied():
    from django.test import override_settings

    from deployer.pruning import prune_versions

    service = service_create(actor=None, project=Project.objects.get(name="default"), document=dict(SLEEPER))
    for seconds in range(602, 606):
        service_update(actor=None, service=Service.objects.get(pk=service.pk), patch=new_shape(seconds))
    Service.objects.filter(pk=service.pk).update(rollout=None)  # as if the last rollout had finished
    version_weights_set(actor=None, service=Service.objects.get(pk=service.pk), weights={2: 50, 5: 50})
    assert applied(service)[2] == 0  # asked, not applied: no reconcile yet

    with override_settings(FERRY_VERSIONS_KEPT=2):
        assert prune_versions(Service.objects.get(pk=service.pk)) == 1
    assert sorted(service.versions.values_list("number", flat=True)) == [1, 2, 4, 5]
