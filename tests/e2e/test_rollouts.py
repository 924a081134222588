"""Rollouts with real instances: weights follow readiness, actions take effect, a broken version gets nothing."""

import shutil

import pytest

from services.models import Project, Service
from services.writes import (
    rollout_finish,
    rollout_promote,
    rollout_rollback,
    rollout_set_canary_weight,
    rollout_switch,
    service_create,
    service_update,
)

from .conftest import converge

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def weights(service: Service) -> dict[int, int]:
    return {v.number: v.weight for v in service.versions.all() if v.weight}


def ready_versions(service: Service) -> set[int]:
    return set(service.instances.filter(ready=True).values_list("version__number", flat=True))


def iris_file(demo_models) -> dict:
    from processors.demo import demo_service_files

    return next(f for f in demo_service_files(demo_models) if f["name"] == "demo_iris")


@pytest.fixture
def iris(local_cluster, demo_models):
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=iris_file(demo_models))
    return converge(service, lambda s: s.phase == "Running")


def new_version(service: Service, **strategy) -> Service:
    # Dropping the warm-up changes the instance shape: a new version of the same model.
    return service_update(actor=None, service=service, patch={"warm_up_data_path": None}, **strategy)


def test_a_canary_takes_its_share_then_is_promoted_and_rolled_back(iris):
    iris = new_version(iris, strategy="canary", canary_weight=20)
    assert weights(Service.objects.get(pk=iris.pk)) == {1: 100}  # not ready yet: no traffic
    iris = converge(iris, lambda s: weights(s) == {1: 80, 2: 20}, what="a 20 % canary")
    assert ready_versions(iris) == {1, 2}

    rollout_set_canary_weight(actor=None, service=iris, weight=50)
    iris = converge(iris, lambda s: weights(s) == {1: 50, 2: 50}, what="a 50 % canary")

    rollout_promote(actor=None, service=iris)
    iris = converge(iris, lambda s: weights(s) == {2: 100} and s.rollout is None and ready_versions(s) == {2},
                    what="the promotion")
    assert iris.last_rolled_out_version == 2

    # Version 1's instances stopped after the promotion: version 2 keeps serving until they are back and ready.
    iris = rollout_rollback(actor=None, service=iris)
    assert weights(Service.objects.get(pk=iris.pk)) == {2: 100}
    assert (iris.rollout["strategy"], iris.rollout["from_version"], iris.rollout["to_version"]) == ("rolling", 2, 1)
    iris = converge(iris, lambda s: weights(s) == {1: 100} and s.rollout is None and ready_versions(s) == {1},
                    what="the rollback")
    assert iris.last_rolled_out_version == 1
    reasons = set(iris.events.values_list("reason", flat=True))
    assert {"StartedRollout", "ShiftedTraffic", "SetCanaryWeight", "Promoted", "RolledOut", "RolledBack"} <= reasons


def test_a_canary_rolled_back_hands_its_traffic_back_at_once(iris):
    iris = new_version(iris, strategy="canary", canary_weight=50)
    iris = converge(iris, lambda s: weights(s) == {1: 50, 2: 50}, what="a 50 % canary")

    rollout_rollback(actor=None, service=iris)
    iris = Service.objects.get(pk=iris.pk)
    assert weights(iris) == {1: 100} and iris.rollout is None  # version 1 is ready: written by the rollback itself
    iris = converge(iris, lambda s: ready_versions(s) == {1} and not s.instances.filter(version__number=2).exists(),
                    what="the canary to stop")
    assert iris.last_rolled_out_version == 1


def test_blue_green_waits_warm_then_switches_in_one_step_and_finishes(iris):
    iris = new_version(iris, strategy="blue-green")
    iris = converge(iris, lambda s: s.rollout and s.rollout["state"] == "AwaitingSwitch", what="green ready")
    assert weights(iris) == {1: 100} and ready_versions(iris) == {1, 2}  # green is up at 0 %

    rollout_switch(actor=None, service=iris)
    iris = Service.objects.get(pk=iris.pk)
    assert weights(iris) == {2: 100}  # written by the switch itself: one routing update
    iris = converge(iris, lambda s: s.rollout["state"] == "Switched" and ready_versions(s) == {1, 2},
                    what="blue to stay warm")

    rollout_finish(actor=None, service=iris)
    iris = converge(iris, lambda s: s.rollout is None and ready_versions(s) == {2} and
                    not s.instances.filter(version__number=1).exists(), what="blue to stop")
    assert iris.last_rolled_out_version == 2


def test_a_version_whose_model_is_missing_never_gets_traffic(iris):
    iris = service_update(actor=None, service=iris, patch={"model_path": "file:///nowhere/model/"})
    iris = converge(iris, lambda s: s.rollout and s.rollout["state"] == "Failed", what="the rollout to fail")
    assert weights(iris) == {1: 100} and ready_versions(iris) == {1}
    assert iris.phase == "Running"
    degraded = next(c for c in iris.conditions if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RolloutFailed")
    assert "/nowhere/model/" in degraded["message"]
    assert iris.events.filter(reason="RolloutFailed", type="Warning").exists()


def test_rolling_back_to_a_version_whose_model_is_gone_keeps_the_serving_version(local_cluster, demo_models, tmp_path):
    model = tmp_path / "iris-v1"
    shutil.copytree(demo_models["iris_model"].parent, model)
    document = {**iris_file(demo_models), "model_path": model.as_uri() + "/"}
    iris = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
    iris = converge(iris, lambda s: s.phase == "Running", what="version 1 Running")
    iris = service_update(actor=None, service=iris, patch={"model_path": iris_file(demo_models)["model_path"]})
    iris = converge(iris, lambda s: weights(s) == {2: 100} and s.rollout is None and ready_versions(s) == {2} and
                    not s.instances.filter(version__number=1).exists(), what="version 2 rolled out")
    shutil.rmtree(model)

    rollout_rollback(actor=None, service=iris)
    iris = converge(iris, lambda s: s.rollout and s.rollout["state"] == "Failed", what="the rollback to fail")
    assert weights(iris) == {2: 100} and ready_versions(iris) == {2} and iris.last_rolled_out_version == 2
    assert iris.phase == "Running"
    degraded = next(c for c in iris.conditions if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RolloutFailed")
    assert str(model) in degraded["message"]


def test_a_rolling_update_keeps_within_max_surge_and_max_unavailable(local_cluster, demo_models):
    document = iris_file(demo_models)
    document["metadata"] = {**document.get("metadata", {}), "instance": 2,
                            "rolling_strategy": {"max_surge": 1, "max_unavailable": 0}}
    iris = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
    iris = converge(iris, lambda s: s.phase == "Running" and ready_versions(s) == {1}, what="two v1 instances")
    iris = new_version(iris)  # rolling, the default strategy
    seen = []

    def record(service: Service) -> bool:
        live = service.local_instances.exclude(state__in=("Terminated", "Failed")).filter(desired="running")
        seen.append((live.count(), service.instances.filter(ready=True).count()))
        return service.rollout is None and ready_versions(service) == {2} and service.instances.count() == 2

    converge(iris, record, timeout=120, what="the rolling update")
    assert max(live for live, _ in seen) == 3, seen  # 2 + max_surge 1, never more
    assert min(ready for _, ready in seen) >= 2, seen  # 2 - max_unavailable 0, never fewer ready
