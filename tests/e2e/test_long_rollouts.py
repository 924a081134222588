"""Rollouts that last: a canary resting with its share ready, or a paused rollout, outlives its progress deadline
with real instances and keeps its weights; a canary that cannot get ready fails at that deadline.

The per-service deadline (`metadata.rolling_strategy.progress_deadline_seconds`) is lowered to a few seconds
once the canary is up, so "well past the deadline" takes seconds; each wait reconciles as the sweep does and
ends on the rollout record's own clock, not on a fixed sleep.
"""

import shutil

import pytest
from django.utils import timezone

from deployer.progress import progress_since
from services.models import Project, Service
from services.writes import rollout_pause, rollout_resume, service_create, service_update

from .conftest import converge

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
SHORT = 2  # seconds: the deadline the canary is held past
START_UP = 120  # seconds: generous while instances start on a busy machine


def weights(service: Service) -> dict[int, int]:
    return {v.number: v.weight for v in service.versions.all() if v.weight}


def ready_versions(service: Service) -> set[int]:
    return set(service.instances.filter(ready=True).values_list("version__number", flat=True))


def deadline(seconds: int) -> dict:
    return {"metadata": {"rolling_strategy": {"progress_deadline_seconds": seconds}}}


def iris_file(demo_models) -> dict:
    from processors.demo import demo_service_files

    document = next(f for f in demo_service_files(demo_models) if f["name"] == "demo_iris")
    return document | {"metadata": {**document["metadata"], "instance": 2}}


@pytest.fixture
def iris(local_cluster, demo_models):
    document = iris_file(demo_models) | deadline(START_UP)
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
    return converge(service, lambda s: s.phase == "Running" and ready_versions(s) == {1}, timeout=120,
                    what="version 1 Running")


def canary(service: Service, weight: int = 20, **patch) -> Service:
    # Dropping the warm-up changes the instance shape: a new version of the same model.
    return service_update(actor=None, service=service, patch={"warm_up_data_path": None, **patch},
                          strategy="canary", canary_weight=weight)


def held_past(service: Service, seconds: float) -> Service:
    """Reconciles until the rollout has gone `seconds` without progress, then once more."""
    return converge(service, lambda s: (timezone.now() - progress_since(s.rollout)).total_seconds() > seconds,
                    timeout=seconds + 30, what=f"the rollout to rest for {seconds:g} s")


def assert_healthy_canary(service: Service) -> None:
    assert service.rollout["state"] == "Progressing", service.rollout
    assert weights(service) == {1: 80, 2: 20}
    assert service.phase == "Running"
    degraded = next(c for c in service.conditions if c["type"] == "Degraded")
    assert degraded["status"] == "False", degraded
    assert not service.events.filter(reason__in=("RolloutFailed", "ReconcileTimeout")).exists()


def test_a_canary_with_its_share_ready_is_held_well_past_its_deadline(iris):
    iris = canary(iris)
    iris = converge(iris, lambda s: weights(s) == {1: 80, 2: 20}, timeout=120, what="a 20 % canary")
    iris = service_update(actor=None, service=iris, patch=deadline(SHORT))
    assert iris.versions.count() == 2  # the deadline is a service setting, not a new version
    iris = held_past(iris, 3 * SHORT)
    assert_healthy_canary(iris)
    assert ready_versions(iris) == {1, 2}


def test_a_canary_paused_past_its_deadline_then_resumed_is_not_aborted(iris):
    iris = canary(iris)
    rollout_pause(actor=None, service=iris)
    # Paused, the canary's instance still starts; its share waits for the resume.
    iris = converge(iris, lambda s: ready_versions(s) == {1, 2}, timeout=120, what="the paused canary's instance")
    iris = service_update(actor=None, service=iris, patch=deadline(SHORT))
    iris = held_past(iris, 3 * SHORT)
    assert iris.rollout["state"] == "Paused" and weights(iris) == {1: 100}

    resumed_at = timezone.now()
    rollout_resume(actor=None, service=iris)
    iris = converge(iris, lambda s: weights(s) == {1: 80, 2: 20}, what="the resumed canary's share")
    assert progress_since(iris.rollout) >= resumed_at  # the clock restarted at the resume
    iris = held_past(iris, 2 * SHORT)
    assert_healthy_canary(iris)


def test_a_canary_that_cannot_get_ready_fails_at_its_deadline_and_gets_no_traffic(iris, demo_models, tmp_path):
    broken = tmp_path / "broken-iris"
    shutil.copytree(demo_models["iris_model"].parent, broken)
    (broken / demo_models["iris_model"].name).write_bytes(b"not a model")  # fetched fine, fails to load
    iris = canary(iris, model_path=broken.as_uri() + "/", **deadline(SHORT))
    iris = converge(iris, lambda s: s.rollout and s.rollout["state"] == "Failed", timeout=60,
                    what="the canary to fail")
    assert "0 of the 1 instance(s)" in iris.rollout["message"] and f"{SHORT} s" in iris.rollout["message"]
    assert weights(iris) == {1: 100} and ready_versions(iris) == {1}
    assert iris.events.filter(reason="RolloutFailed", type="Warning").exists()
    iris = converge(iris, lambda s: not s.instances.filter(version__number=2).exists(), timeout=60,
                    what="the failed canary's instances to stop")
