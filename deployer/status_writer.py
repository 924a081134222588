"""The one writer of a service's status: phase, reason, message, conditions, the generation observed and when
to look again. The reconcile decides what the status is (deployer/status.py, pure); each function here turns
one kind of conclusion into conditions and events, and all of them write through `_write`.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from services.models import Phase, Service
from services.rollouts import rollout_of, service_progress_deadline
from services.writes import event_record

from .conditions import condition_set
from .drivers import PermanentError
from .progress import status_timed_out
from .status import Status

RECHECK_WHILE_PROGRESSING = timedelta(seconds=2)
RECHECK_WHEN_STEADY = timedelta(seconds=30)


def converged(service: Service, generation: int, status: Status) -> timedelta:
    """The status a converge derived, with Degraded for work stuck past its deadline. Returns the requeue."""
    now = timezone.now()
    conditions = condition_set(service.conditions, type="Ready", status=status.ready, reason=status.reason,
                               message=status.message, generation=generation, now=now)
    conditions = condition_set(conditions, type="Progressing", status=status.progressing, reason=status.reason,
                               message=status.message, generation=generation, now=now)
    degraded, reason, message = _degradation(service, status, conditions, now)
    conditions = condition_set(conditions, type="Degraded", status=degraded, reason=reason, message=message,
                               generation=generation, now=now)
    if status.phase != service.phase:
        event_record(service=service, reason=f"Became{status.phase}", warning=status.phase == Phase.FAILED,
                     message=f"Service {service.name} is {status.phase}: {status.message}")
    if _newly_degraded(service.conditions, conditions):
        event_record(service=service, reason="ReconcileTimeout", warning=True, message=message)
    requeue = RECHECK_WHILE_PROGRESSING if status.progressing else RECHECK_WHEN_STEADY
    _write(service, generation, requeue, phase=status.phase, status_reason=status.reason,
           status_message=status.message, conditions=conditions)
    return requeue


def failed(service: Service, generation: int, error: PermanentError) -> None:
    """Permanent: retrying cannot help until the user changes something, so no recheck on a timer."""
    now = timezone.now()
    conditions = service.conditions
    for kind, value in (("Ready", False), ("Progressing", False), ("Degraded", True)):
        conditions = condition_set(conditions, type=kind, status=value, reason=error.reason, message=error.message,
                                   generation=generation, now=now)
    if service.status_reason != error.reason:
        event_record(service=service, reason=error.reason, warning=True, message=error.message)
    _write(service, generation, None, phase=Phase.FAILED, status_reason=error.reason, status_message=error.message,
           conditions=conditions)


def waiting_for_cluster(service: Service) -> timedelta:
    """The cluster has no driver or no way in: the desired state waits, and is looked at again (the cluster may
    get its kubeconfig meanwhile). Written only if the user did not change the service since it was read."""
    message = (
        f'Cluster "{service.cluster.name}" ({service.cluster.kind}) has no usable driver or connection; '
        "the desired state is stored and will be applied when it has one."
    )
    conditions = condition_set(service.conditions, type="Ready", status=False, reason="WaitingForCluster",
                               message=message, generation=service.generation, now=timezone.now())
    _write(service, service.generation, RECHECK_WHEN_STEADY, same_generation=True, phase=Phase.WAITING,
           status_reason="WaitingForCluster", status_message=message, conditions=conditions)
    return RECHECK_WHEN_STEADY


def deleting(service: Service) -> timedelta:
    """Instances are still being stopped: the finalizer looks again shortly."""
    _write(service, service.generation, RECHECK_WHILE_PROGRESSING, phase=Phase.DELETING)
    return RECHECK_WHILE_PROGRESSING


def service_deadline(service: Service) -> timedelta:
    return service_progress_deadline(service.spec, settings.FERRY_PROGRESS_DEADLINE_SECONDS,
                                     settings.FERRY_LLM_PROGRESS_DEADLINE_SECONDS)


def _write(service: Service, generation: int, requeue: timedelta | None, *, same_generation: bool = False,
           **fields) -> None:
    now = timezone.now()
    rows = Service.objects.filter(pk=service.pk, **({"generation": generation} if same_generation else {}))
    rows.update(observed_generation=generation, next_reconcile_at=now + requeue if requeue else None,
                updated_at=now, **fields)


def _degradation(service: Service, status: Status, conditions: list[dict], now) -> tuple[bool, str, str]:
    """Progressing for longer than the deadline outside a rollout is Degraded (ReconcileTimeout), as is a
    crash loop; a rollout keeps its own clock (the rollout record's)."""
    if status.degraded:
        return True, status.reason, status.message
    rollout = rollout_of(service.rollout)
    if rollout is not None and rollout.failed:
        return True, "RolloutFailed", rollout.message
    progressing = next(c for c in conditions if c["type"] == "Progressing")
    since = datetime.fromisoformat(progressing["last_transition_time"]) if progressing["status"] == "True" else None
    deadline = service_deadline(service)
    if status_timed_out(rollout=rollout, progressing_since=since, now=now, deadline=deadline):
        seconds = int(deadline.total_seconds())
        return True, "ReconcileTimeout", f"Still progressing after {seconds} s: {status.message}"
    return False, status.reason, status.message


def _newly_degraded(before: list[dict], after: list[dict]) -> bool:
    def degraded_by_timeout(conditions):
        return any(c["type"] == "Degraded" and c["status"] == "True" and c["reason"] == "ReconcileTimeout"
                   for c in conditions)
    return degraded_by_timeout(after) and not degraded_by_timeout(before)
