"""A cluster with no driver (a Kubernetes cluster with no way in yet: no kubeconfig, not in-cluster): intent is
stored, status says so, and the reconcile looks again later (the cluster may get its kubeconfig meanwhile)."""

from datetime import timedelta

import pytest

from deployer import tasks
from deployer.reconcile import reconcile
from services.models import Cluster, Project, Service
from services.writes import service_create, service_delete

pytestmark = pytest.mark.django_db

IRIS = {"name": "iris", "processor": "sklearn", "model_path": "https://models.example.test/m/model.joblib",
        "metadata": {"resource": "remote"}}


@pytest.fixture
def service():
    Cluster.objects.create(name="remote", kind="kubernetes")
    return service_create(actor=None, project=Project.objects.get(name="default"), document=IRIS)


def test_it_marks_a_service_waiting_and_observed(service):
    outcome = reconcile(service.pk)
    service.refresh_from_db()
    assert (service.phase, service.status_reason) == ("Waiting", "WaitingForCluster")
    assert (outcome.phase, outcome.requeue_after, outcome.skipped) == ("Waiting", timedelta(seconds=30), False)
    assert service.next_reconcile_at is not None  # the sweep comes back for it
    assert service.observed_generation == service.generation
    assert 'Cluster "remote" (kubernetes) has no usable driver' in service.status_message


def test_it_finishes_a_deletion_with_nothing_left(service):
    service_delete(actor=None, service=service)
    reconcile(service.pk)
    assert not Service.objects.filter(pk=service.pk).exists()


def test_it_ignores_a_service_that_is_already_gone():
    reconcile(987654)  # must not raise: a delayed task may arrive after the row is deleted


def test_the_sweep_enqueues_exactly_what_is_due(service, monkeypatch):
    enqueued = []
    monkeypatch.setattr(tasks.reconcile_service, "delay", enqueued.append)
    assert tasks.reconcile_due() == 1 and enqueued == [service.pk]
    reconcile(service.pk)
    enqueued.clear()
    assert tasks.reconcile_due() == 0 and enqueued == []
