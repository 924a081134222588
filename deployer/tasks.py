"""Celery tasks: thin, named explicitly, ids not objects. Either trigger alone reaches the right state."""

from celery import shared_task
from django.db.models import F, Q
from django.utils import timezone

from services.models import Service

from .drivers import TransientError
from .activation import activate
from .benchmarks import run as benchmark_run, sweep as benchmark_sweep
from .engines import ENGINE_TASK, install_run
from .fetches import FETCH_TASK, fetch_run
from .reconcile import reconcile
from .routing import republish_if_lost


@shared_task(name="deployer.reconcile_service", acks_late=True, autoretry_for=(TransientError,),
             retry_backoff=2, retry_backoff_max=300, retry_jitter=True, max_retries=None)
def reconcile_service(service_id: int) -> None:
    """Transient errors retry with capped exponential backoff; permanent ones are written as status."""
    reconcile(service_id)


@shared_task(name=FETCH_TASK, acks_late=True)
def fetch_source(fetch_id: int) -> None:
    """On the `fetch` queue (CELERY_TASK_ROUTES), served by the fetcher worker: a slow download never holds a
    reconcile worker. When it ends, the service's reconcile launches (or fails) the version."""
    service_id = fetch_run(fetch_id)
    if service_id is not None:
        reconcile_service.delay(service_id)


@shared_task(name=ENGINE_TASK, acks_late=True)
def install_engine(package: str, service_id: int) -> None:
    """On the `fetch` queue too (queued there by deployer/engines.py): an LLM engine's environment takes minutes
    to install. When it ends, the service's reconcile launches (or fails) the version."""
    service_id = install_run(package, service_id)
    if service_id is not None:
        reconcile_service.delay(service_id)


@shared_task(name="deployer.reconcile_due")
def reconcile_due() -> int:
    """The sweep: every service whose desired state moved on, whose recheck is due, or that is being deleted."""
    due = Service.objects.filter(
        ~Q(observed_generation=F("generation"))
        | Q(next_reconcile_at__lte=timezone.now())
        | Q(deletion_requested_at__isnull=False)
    ).values_list("pk", flat=True)
    service_ids = list(due)
    republish_if_lost()  # a restarted Redis lost the routes of steady services, which nothing else republishes
    for service_id in service_ids:
        reconcile_service.delay(service_id)
    return len(service_ids)


@shared_task(name="deployer.activate_service", acks_late=True)
def activate_service(service_name: str, cluster_name: str) -> bool:
    """The gateway's activator holds a request for a service at zero and asks for instances at once."""
    return activate(service_name, cluster_name)


@shared_task(name="deployer.place_pool", acks_late=True, expires=30)
def place_pool_task(pool_id: int) -> list[str]:
    """One pass of the model mesh's placer over one pool (deployer/mesh/placer.py); asked for by the autoscaler
    loop every tick and after a pool model's versions change. Skipped when another pass holds the pool."""
    from .mesh.placer import place_pool

    return place_pool(pool_id)


@shared_task(name="deployer.run_benchmark", acks_late=True)
def run_benchmark(task_id: int, attempt: int) -> str:
    """On the `benchmark` queue (settings.CELERY_TASK_ROUTES): a run holds its worker for its duration."""
    return benchmark_run(task_id, attempt)


@shared_task(name="deployer.sweep_benchmarks")
def sweep_benchmarks() -> int:
    return benchmark_sweep()
