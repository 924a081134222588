"""The user's side of the progress deadline: actions on a rollout restart its clock, and changing a canary's
scaling or deadline while it runs does not start another version. No agent runs here: nothing becomes ready,
and each write's reconcile runs inline (tests/e2e/test_long_rollouts.py has the real instances)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployer.progress import progress_since
from deployer.reconcile import reconcile
from services.models import Project, Service
from services.writes import (
    rollout_pause,
    rollout_promote,
    rollout_resume,
    rollout_set_canary_weight,
    service_create,
    service_update,
)

pytestmark = pytest.mark.django_db
SLEEPER = {"name": "sleeper", "processor": "custom",
           "containers": [{"image": "none", "script": "sleep 600", "port": 8000}], "metadata": {"instance": 2}}
AN_HOUR_AGO = timezone.now() - timedelta(hours=1)


def canary_of(service: Service) -> Service:
    patch = {"containers": [{"image": "none", "script": "sleep 601", "port": 8000}]}
    return service_update(actor=None, service=service, patch=patch, strategy="canary", canary_weight=20)


def rested_an_hour(service: Service) -> Service:
    """As if the rollout had made no progress for an hour."""
    rollout = {**service.rollout, "started_at": AN_HOUR_AGO.isoformat(), "progress_at": AN_HOUR_AGO.isoformat()}
    Service.objects.filter(pk=service.pk).update(rollout=rollout)
    return Service.objects.get(pk=service.pk)


@pytest.fixture
def canary():
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=dict(SLEEPER))
    return canary_of(service)


def test_a_rollout_paused_for_an_hour_is_not_aborted_on_resume(canary):
    rollout_pause(actor=None, service=canary)
    paused = rested_an_hour(Service.objects.get(pk=canary.pk))
    reconcile(paused.pk)
    assert Service.objects.get(pk=paused.pk).rollout["state"] == "Paused"  # paused: no deadline

    before = timezone.now()
    resumed = rollout_resume(actor=None, service=paused)  # reconciles inline, on commit
    resumed = Service.objects.get(pk=resumed.pk)
    assert resumed.rollout["state"] == "Progressing"
    assert progress_since(resumed.rollout) >= before
    assert not resumed.events.filter(reason="RolloutFailed").exists()


def test_a_rollout_an_hour_without_progress_fails(canary):
    stuck = rested_an_hour(canary)
    reconcile(stuck.pk)
    stuck = Service.objects.get(pk=stuck.pk)
    assert stuck.rollout["state"] == "Failed"
    assert "0 of the 1 instance(s)" in stuck.rollout["message"]
    degraded = next(c for c in stuck.conditions if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RolloutFailed")


@pytest.mark.parametrize("action", ["weight", "promote"])
def test_a_new_canary_weight_or_a_promotion_restarts_the_clock(canary, action):
    stuck = rested_an_hour(canary)
    before = timezone.now()
    if action == "weight":
        rollout_set_canary_weight(actor=None, service=stuck, weight=50)
    else:
        rollout_promote(actor=None, service=stuck)
    after = Service.objects.get(pk=stuck.pk)
    assert after.rollout["state"] == "Progressing" and progress_since(after.rollout) >= before


def test_a_per_service_deadline_is_honoured_and_refused_when_invalid(canary):
    service_update(actor=None, service=canary, patch={"metadata": {"rolling_strategy": {
        "progress_deadline_seconds": 7200}}})
    rested = rested_an_hour(Service.objects.get(pk=canary.pk))
    reconcile(rested.pk)
    assert Service.objects.get(pk=rested.pk).rollout["state"] == "Progressing"  # an hour is within 2 h

    from services.servicefile.errors import ServiceFileError

    for bad in (0, -5, 1.5, "7200", True):
        with pytest.raises(ServiceFileError) as refused:
            service_update(actor=None, service=rested, patch={"metadata": {"rolling_strategy": {
                "progress_deadline_seconds": bad}}})
        assert "metadata.rolling_strategy.progress_deadline_seconds: must be an integer >= 1" in str(refused.value)
    unchanged = Service.objects.get(pk=rested.pk)
    assert unchanged.spec["metadata"]["rolling_strategy"] == {"progress_deadline_seconds": 7200}


def test_scaling_a_canary_or_changing_its_deadline_starts_no_other_version(canary):
    service_update(actor=None, service=canary, patch={"metadata": {"instance": 3}})
    service_update(actor=None, service=canary, patch={"metadata": {"rolling_strategy": {
        "progress_deadline_seconds": 60}}})
    after = Service.objects.get(pk=canary.pk)
    assert sorted(after.versions.values_list("number", flat=True)) == [1, 2]
    assert (after.rollout["strategy"], after.rollout["to_version"]) == ("canary", 2)
    assert after.instance_count == 3
    assert not after.events.filter(reason="SupersededRollout").exists()
