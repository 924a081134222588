"""Benchmark tasks (EAS CreateBenchmarkTask, UpdateBenchmarkTask, StartBenchmarkTask, StopBenchmarkTask,
DeleteBenchmarkTask). A task targets one service of its own project and cluster and is sent only to the gateway
of that cluster (the local cluster's, FERRY_GATEWAY_URL); its rate, duration and concurrency are bounded by
FERRY_BENCHMARK_MAX_QPS / _MAX_SECONDS / _MAX_CONCURRENCY. The run itself is the deployer's
(deployer/benchmarks.py), queued through services.ports after the write commits."""

from __future__ import annotations

import hmac
import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from services import benchmark_config
from services.errors import Conflict, InvalidRequest, NotFound
from services.models import BenchmarkState, BenchmarkTask, ClusterKind, Service
from services.ports import deployer
from services.selectors.access import require_write, services_visible_to
from services.selectors.catalog import service_token


def bounds() -> benchmark_config.Bounds:
    return benchmark_config.Bounds(max_qps=settings.FERRY_BENCHMARK_MAX_QPS,
                                   max_seconds=settings.FERRY_BENCHMARK_MAX_SECONDS,
                                   max_concurrency=settings.FERRY_BENCHMARK_MAX_CONCURRENCY)


def checked(config: str | dict) -> tuple[dict, benchmark_config.Plan]:
    """The configuration as a dict and its plan, or InvalidRequest naming every bad field."""
    try:
        value = benchmark_config.parse(config)
        return value, benchmark_config.plan_of(value, bounds())
    except benchmark_config.ConfigError as error:
        raise InvalidRequest(str(error), errors=[{"Path": path, "Message": message}
                                                 for path, message in error.problems]) from error


def target_of(user, config: dict) -> Service:
    """The service a configuration names, among those the user sees (else 404), writable by the user (else 403)."""
    service = config.get("service") or {}
    name, cluster = service.get("serviceName"), service.get("clusterId")
    candidates = services_visible_to(user).filter(name=name, deletion_requested_at__isnull=True)
    if cluster:
        candidates = candidates.filter(cluster__name=cluster)
    found = list(candidates[:2])
    if not found:
        raise NotFound(f"Service {name} not found.", code="ServiceNotFound")
    if len(found) > 1:
        raise InvalidRequest.at("service.clusterId", f"service {name} exists in several clusters; name one")
    require_write(user, found[0].project)
    return found[0]


def _token_check(service: Service, config: dict) -> None:
    """EAS's configuration carries the token its tool calls with; Ferry always sends the service's own. A token
    given that is not the service's would make EAS's run fail with 401s: refused rather than quietly replaced."""
    given = (config.get("service") or {}).get("requestToken")
    if given and not hmac.compare_digest(str(given).encode(), service_token(service).encode()):
        raise InvalidRequest.at("service.requestToken", f"is not the token of {service.name}: Ferry calls with the "
                                                        "service's own token; leave it out")


def _gateway_check(service: Service) -> None:
    # The only gateway Ferry knows the address of is the local cluster's; a Kubernetes cluster's is the user's.
    if service.cluster.kind != ClusterKind.LOCAL:
        raise InvalidRequest.at("service.serviceName", f"benchmark tasks run through the local cluster's gateway "
                                                       f"only; {service.name} is in cluster {service.cluster.name}")


@transaction.atomic
def benchmark_create(*, actor, config: str | dict, service: Service | None = None) -> BenchmarkTask:
    """Creates a task and queues its run at once, as EAS does. `service` (the console's) must be the one named."""
    value, plan = checked(config)
    target = target_of(actor, value)
    if service is not None and target.pk != service.pk:
        raise InvalidRequest.at("service.serviceName", f"must be {service.name}")
    _gateway_check(target)
    _token_check(target, value)
    name = f"benchmark-{target.name}-{secrets.token_hex(2)}"
    while BenchmarkTask.objects.filter(cluster=target.cluster, name=name).exists():
        name = f"benchmark-{target.name}-{secrets.token_hex(3)}"
    task = BenchmarkTask.objects.create(
        project=target.project, cluster=target.cluster, service=target, name=name,
        task_id=f"eas-b-{secrets.token_hex(6)}", config=benchmark_config.stored(value),
        state=BenchmarkState.CREATING, attempt=1, created_by=actor,
        message=f"{plan.duration} s at {_load_words(plan)}")
    deployer().benchmark_run_soon(task.pk, task.attempt)
    return task


@transaction.atomic
def benchmark_update(*, actor, task: BenchmarkTask, config: str | dict) -> BenchmarkTask:
    """A new configuration for a task that is not running; the next Start uses it. The target cannot change."""
    task = BenchmarkTask.objects.select_for_update().get(pk=task.pk)
    value, plan = checked(config)
    if plan.service_name != task.service.name:
        raise InvalidRequest.at("service.serviceName", f"is {task.service.name} for this task; create another "
                                                       f"task to test another service")
    if task.state in BenchmarkState.active():
        raise Conflict(f"Benchmark task {task.name} is {task.state}; stop it before changing it.",
                       code="BenchmarkTaskRunning")
    _token_check(task.service, value)
    task.config = benchmark_config.stored(value)
    task.message = f"{plan.duration} s at {_load_words(plan)}"
    task.save(update_fields=["config", "message", "updated_at"])
    return task


@transaction.atomic
def benchmark_start(*, actor, task: BenchmarkTask) -> BenchmarkTask:
    """Runs a task again from the start (a new attempt: the report starts empty)."""
    task = BenchmarkTask.objects.select_for_update().get(pk=task.pk)
    if task.state in BenchmarkState.active():
        raise Conflict(f"Benchmark task {task.name} is already {task.state}.", code="BenchmarkTaskRunning")
    _, plan = checked(task.config)  # the bounds may have been lowered since it was created
    _gateway_check(task.service)
    task.attempt += 1
    task.state, task.reason, task.progress, task.report = BenchmarkState.STARTING, "", 0.0, {}
    task.message = f"{plan.duration} s at {_load_words(plan)}"
    task.started_at = task.finished_at = task.heartbeat_at = None
    task.save()
    deployer().benchmark_run_soon(task.pk, task.attempt)
    return task


@transaction.atomic
def benchmark_stop(*, actor, task: BenchmarkTask) -> BenchmarkTask:
    """Asks the runner to stop (it looks every second); a task not yet picked up stops at once."""
    task = BenchmarkTask.objects.select_for_update().get(pk=task.pk)
    if task.state not in BenchmarkState.active():
        raise Conflict(f"Benchmark task {task.name} is {task.state}, not running.", code="BenchmarkTaskNotRunning")
    if task.state in (BenchmarkState.CREATING, BenchmarkState.STARTING):
        task.state, task.reason, task.finished_at = BenchmarkState.STOPPED, "StoppedByUser", timezone.now()
    elif task.state == BenchmarkState.RUNNING:
        task.state = BenchmarkState.STOPPING
    task.save(update_fields=["state", "reason", "finished_at", "updated_at"])
    return task


@transaction.atomic
def benchmark_delete(*, actor, task: BenchmarkTask) -> None:
    """Deletes a task and its report; a running one's runner sees its row gone and stops within a second."""
    BenchmarkTask.objects.filter(pk=task.pk).delete()


def _load_words(plan: benchmark_config.Plan) -> str:
    if plan.qps is not None:
        return f"{plan.qps} requests/s (at most {plan.concurrency} in flight)"
    return f"{plan.concurrency} concurrent requests"
