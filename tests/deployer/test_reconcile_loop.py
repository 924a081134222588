"""The reconcile loop's guards: one reconcile per service at a time, and stuck work turned into Degraded."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings

from deployer.locks import reconcile_lock
from deployer.reconcile import reconcile
from services.models import Project, Service
from services.writes import service_create

SLEEPER = {"name": "sleeper", "processor": "custom",
           "containers": [{"image": "none", "script": "sleep 600", "port": 8000}]}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_lets_only_one_reconcile_hold_a_service():
    held_elsewhere, release = threading.Event(), threading.Event()
    results = {}

    def other_worker():
        with reconcile_lock(42) as held:
            results["other"] = held
            held_elsewhere.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    assert held_elsewhere.wait(10)
    with reconcile_lock(42) as held:
        results["while_held"] = held
    with reconcile_lock(43) as held:
        results["another_service"] = held
    release.set()
    thread.join(10)
    with reconcile_lock(42) as held:
        results["after_release"] = held
    assert results == {"other": True, "while_held": False, "another_service": True, "after_release": True}


@pytest.mark.django_db
def test_it_marks_work_stuck_past_its_deadline_degraded_once():
    # No node agent runs in this test, so the instance never starts: the service stays Creating.
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=SLEEPER)
    with override_settings(FERRY_PROGRESS_DEADLINE_SECONDS=0):
        reconcile(service.pk)
        reconcile(service.pk)
        reconcile(service.pk)
    service.refresh_from_db()
    degraded = next(c for c in service.conditions if c["type"] == "Degraded")
    assert (service.phase, degraded["status"], degraded["reason"]) == ("Creating", "True", "ReconcileTimeout")
    assert service.events.filter(reason="ReconcileTimeout", type="Warning").count() == 1
    assert service.next_reconcile_at is not None  # still progressing: the sweep keeps looking


@pytest.mark.django_db
def test_the_sqlite_lease_excludes_a_second_holder_and_expires():
    from datetime import timedelta

    from django.utils import timezone

    from deployer.locks import _lease
    from deployer.models import ReconcileLease

    with _lease(7) as first:
        with _lease(7) as second:
            assert (first, second) == (True, False)
        ReconcileLease.objects.filter(service_id=7).update(expires_at=timezone.now() - timedelta(seconds=1))
        with _lease(7) as after_expiry:
            assert after_expiry  # a worker that died holding it does not block the service forever
    assert not ReconcileLease.objects.filter(service_id=7).exists()


@pytest.mark.django_db
def test_it_keeps_a_bounded_number_of_versions():
    from deployer.pruning import prune_versions
    from services.writes import service_update

    service = service_create(actor=None, project=Project.objects.get(name="default"), document=SLEEPER)
    for n in range(2, 6):
        service_update(actor=None, service=service,
                       patch={"containers": [{"image": "none", "script": f"sleep {600 + n}", "port": 8000}]})
    Service.objects.filter(pk=service.pk).update(rollout=None)  # as if the last rollout had finished
    with override_settings(FERRY_VERSIONS_KEPT=2):
        assert prune_versions(service) == 2
    # The newest two are kept, and so is the last rolled-out one (version 1: nothing finished rolling out).
    assert sorted(service.versions.values_list("number", flat=True)) == [1, 4, 5]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_pruning_waits_for_a_service_write_in_progress_and_keeps_the_version_it_creates():
    """A reconcile's copy of the service predates a version that a user's update is committing: pruning must
    decide after that commit (the version and its rollout seen together), not before or half-way through."""
    from deployer.pruning import prune_versions
    from services.writes import service_update

    service = service_create(actor=None, project=Project.objects.get(name="default"), document=SLEEPER)
    for n in range(2, 5):
        service_update(actor=None, service=service, patch={"containers": [
            {"image": "none", "script": f"sleep {600 + n}", "port": 8000}]})
    stale = Service.objects.get(pk=service.pk)
    locked, moments = threading.Event(), {}

    def user_update():
        with transaction.atomic():
            Service.objects.select_for_update().get(pk=service.pk)
            locked.set()
            time.sleep(0.5)
            service_update(actor=None, service=Service.objects.get(pk=service.pk), patch={"containers": [
                {"image": "none", "script": "sleep 699", "port": 8000}]})
            moments["before_commit"] = time.monotonic()
        connection.close()

    writer = threading.Thread(target=user_update)
    writer.start()
    assert locked.wait(10)
    with override_settings(FERRY_VERSIONS_KEPT=2):
        prune_versions(stale)
    moments["pruned"] = time.monotonic()
    writer.join(10)
    assert moments["pruned"] > moments["before_commit"], "pruning decided while the write was in progress"
    service.refresh_from_db()
    assert service.rollout["to_version"] == 5 and service.versions.filter(number=5).exists()


@pytest.mark.django_db
def test_a_reconcile_returns_its_outcome_and_the_sweep_keeps_the_same_requeue():
    """What controller-runtime's Result is: when to look again, stored as next_reconcile_at for the sweep."""
    project = Project.objects.get(name="default")
    starting = service_create(actor=None, project=project, document=SLEEPER)
    outcome = reconcile(starting.pk)
    starting.refresh_from_db()
    assert (outcome.phase, outcome.requeue_after) == ("Creating", timedelta(seconds=2))  # no agent: still starting
    assert starting.next_reconcile_at is not None

    missing = {"name": "no_processor_here", "processor": "tensorflow_cpu_1.15", "model_path": "/nowhere/model",
               "metadata": {"instance": 1}}
    failing = service_create(actor=None, project=project, document=missing)
    outcome = reconcile(failing.pk)
    failing.refresh_from_db()
    assert (outcome.phase, outcome.requeue_after, failing.phase) == ("Failed", None, "Failed")
    assert failing.next_reconcile_at is None  # permanent: nothing to retry until the user changes something

    assert reconcile(987654).skipped  # gone
