"""Rolling back to a version: at once when it has ready instances, else a rolling rollout back to it, so the
version serving now keeps its instances and traffic until the chosen version's instances are ready.

No agent runs here: instances are written as the reconciler mirrors them, and the rollout plan is asked what it
does next (tests/e2e/test_rollouts.py does the same with real instances).
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployer.rollout import rollout_plan
from services.models import Instance, Project, Service
from services.rollouts import Rollout
from services.writes import rollout_rollback, service_create, version_rollback, version_weights_set

SLEEPER = {"name": "sleeper", "processor": "custom",
           "containers": [{"image": "none", "script": "sleep 600", "port": 8000}], "metadata": {"instance": 1}}

pytestmark = pytest.mark.django_db


def with_versions(count: int) -> Service:
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=dict(SLEEPER))
    for number in range(2, count + 1):
        version = service.versions.get(number=1)
        version.pk, version.number, version.weight = None, number, 0
        version.save()
    version_weights_set(actor=None, service=service, weights={count: 100})
    return Service.objects.get(pk=service.pk)


def ready(service: Service, *numbers: int) -> None:
    service.instances.all().delete()
    for number in numbers:
        Instance.objects.create(service=service, version=service.versions.get(number=number),
                                name=f"sleeper-v{number}-0", state="Running", ready=True, host="127.0.0.1",
                                port=20000 + number)


def weights(service: Service) -> dict[int, int]:
    return {v.number: v.asked_weight for v in service.versions.all() if v.asked_weight}


def test_a_version_without_instances_starts_before_it_takes_the_traffic():
    service = with_versions(2)
    ready(service, 2)  # version 1's instances stopped when version 2 rolled out

    service = rollout_rollback(actor=None, service=service)
    assert weights(service) == {2: 100} and service.last_rolled_out_version == 2
    record = service.rollout
    assert (record["strategy"], record["from_version"], record["to_version"], record["state"]) == (
        "rolling", 2, 1, "Progressing")
    event = service.events.filter(reason="RolledBack").latest("created_at")
    assert "version 2 serves until version 1's instances are ready" in event.message

    def step(ready_counts):
        return rollout_plan(Rollout.from_json(record), total=1, ready=ready_counts, weights=weights(service), now=timezone.now(),
                            deadline=timedelta(seconds=600), service=service.name)

    starting = step({2: 1})
    assert starting.replicas == {1: 1, 2: 1} and starting.weights == {2: 100, 1: 0}
    done = step({1: 1, 2: 1})
    assert done.replicas == {1: 1} and done.weights == {1: 100} and done.rolled_out == 1 and done.rollout is None


def test_eas_update_service_version_does_the_same_and_names_the_chosen_version():
    service = with_versions(3)
    ready(service, 3)

    service = version_rollback(actor=None, service=service, number=1)
    assert weights(service) == {3: 100}
    assert (service.rollout["from_version"], service.rollout["to_version"]) == (3, 1)
    assert service.events.filter(reason="RolledBack", message__startswith="Rolling sleeper back to version 1:").exists()


def test_a_version_with_ready_instances_takes_the_traffic_at_once():
    service = with_versions(2)
    ready(service, 1, 2)  # blue kept warm, say

    service = version_rollback(actor=None, service=service, number=1)
    assert weights(service) == {1: 100} and service.rollout is None and service.last_rolled_out_version == 1


def test_with_nothing_ready_anywhere_the_move_is_immediate():
    service = with_versions(2)  # no instance at all: stopped, or scaled to zero

    service = rollout_rollback(actor=None, service=service)
    assert weights(service) == {1: 100} and service.rollout is None and service.last_rolled_out_version == 1
    assert service.events.filter(reason="RolledBack", message__contains="back to version 1").exists()
