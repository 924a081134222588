"""Asking the placer for a pass (placer.py) without waiting for it: after a commit, as a Celery task."""

from django.db import transaction

from services.models import Service
from services.servicefile.mesh import MODEL_POOL, is_pool


def request_placement(service: Service) -> None:
    """A pool model's versions changed (a rollout moved traffic, a version was added): its pool re-plans soon,
    loading what now takes traffic and unloading what no longer does."""
    from .members import pool_of

    pool = service if is_pool(service.spec) else pool_of(service)
    if pool is not None:
        transaction.on_commit(lambda: _enqueue(pool.pk))


def _enqueue(pool_id: int) -> None:
    from deployer.tasks import place_pool_task

    place_pool_task.delay(pool_id)


def ask_for_placement_passes() -> int:
    """Every running pool gets a placer pass (the autoscaler loop calls this each tick: demand moves, instances
    come and go). Returns how many were asked for."""
    pools = list(Service.objects.filter(spec__metadata__type=MODEL_POOL, desired_state="running",
                                        deletion_requested_at__isnull=True).values_list("pk", flat=True))
    for pool_id in pools:
        _enqueue(pool_id)
    return len(pools)
