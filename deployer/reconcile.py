"""One reconcile of one service: lock, observe, decide (pure), apply, write status — the same path for every
cluster, through the driver contract (deployer/drivers/base.py).

Level-based: every run looks at the whole desired state and the whole observed state, so running it twice,
or after a crash, converges to the same place. It returns an Outcome, as controller-runtime's Reconcile returns a
Result: when to look again, which the status writer (deployer/status_writer.py) also stores for the sweep.
"""

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from services.activations import Activation, Verdict, activation_of, activation_verdict
from services.models import Phase, Service
from services.rollouts import Rollout, rollout_of
from services.scale import service_instance_count
from services.servicefile.mesh import pool_name
from services.writes import event_record

from . import status_writer
from .drivers import PermanentError, Prepared, driver_for
from .instances import record_observed
from .locks import reconcile_lock
from .mesh.members import model_status, pool_model_state
from .mesh.signals import request_placement
from .pruning import prune_versions
from .rollout import Plan, RollingLimits, rollout_plan, steady_plan
from .routing import activation_timeout_seconds, delete_queues, publish_route, unpublish_route
from .status import FAILING, RESTARTING, Status, StatusInput, crash_verdict, derive_status, while_fetching
from .status_writer import service_deadline

logger = logging.getLogger("ferry.deployer")


@dataclass(frozen=True)
class Outcome:
    """What one reconcile concluded. `requeue_after`: when the sweep looks again (None: not until something
    changes, as after a permanent failure). `skipped`: another worker holds the service, or it is gone."""

    phase: str = ""
    requeue_after: timedelta | None = None
    skipped: bool = False


def reconcile(service_id: int) -> Outcome:
    with reconcile_lock(service_id) as held:
        if not held:
            return Outcome(skipped=True)  # another worker is on it; the sweep comes back if it misses a change
        service = Service.objects.select_related("cluster").filter(pk=service_id).first()
        if service is None:
            return Outcome(skipped=True)
        driver = driver_for(service.cluster)
        if driver is None:
            return _without_driver(service)
        if service.deletion_requested_at is not None:
            return _finalize_deletion(service, driver)
        if pool_name(service.spec):
            return _converge_pool_model(service)
        return _converge(service, driver)


def _converge(service: Service, driver) -> Outcome:
    generation = service.generation
    observed = driver.observe(service).instances
    record_observed(service, observed)
    _follow_activation(service, observed)
    plan = _follow_plan(service, generation, _plan(service, observed))
    prepared = driver.prepare(service, plan, observed)
    target = _failing_target(service, prepared.failures)
    if target is not None:
        plan = _follow_plan(service, generation, _fail_rollout(service, prepared.failures[target], observed))
        prepared = driver.prepare(service, plan, observed)
    try:
        if prepared.failures:
            raise next(iter(prepared.failures.values()))
        created = driver.apply(service, prepared)
    except PermanentError as error:
        return _failed(service, generation, error)
    if created:
        logger.info("Asked the cluster to start %s", ", ".join(created))
    _restart_requested_instances(service, driver)
    observed = driver.observe(service).instances
    record_observed(service, observed)
    prune_versions(service)
    status = while_fetching(_status(service, prepared, observed), prepared.fetching)
    requeue = status_writer.converged(service, generation, status)
    publish_route(service.pk)
    return Outcome(status.phase, requeue)


def _converge_pool_model(service: Service) -> Outcome:
    """A model in a pool (docs/mesh.md) runs nothing of its own: its versions are ready when the pool can serve
    them, and the placer (deployer/mesh/placer.py) loads them where requests need them. Weights, canaries and
    rollouts follow the same planner as any service."""
    generation = service.generation
    state = pool_model_state(service)
    plan = _follow_plan(service, generation, _plan(service, [], ready=state.ready, total=1))
    status = _while_rolling_out(rollout_of(service.rollout), model_status(service, state))
    requeue = status_writer.converged(service, generation, status)
    publish_route(service.pk)
    if plan.rolled_out is not None or plan.events:
        request_placement(service)  # the versions to keep loaded changed
    return Outcome(status.phase, requeue)


def _failed(service: Service, generation: int, error: PermanentError) -> Outcome:
    status_writer.failed(service, generation, error)
    publish_route(service.pk)  # instances of an older version may still serve
    return Outcome(Phase.FAILED, None)


def _follow_activation(service: Service, observed) -> None:
    """Called by each reconcile: forgets a wake-up once an instance serves; past the deadline, fails it (back to
    zero, an ActivationFailed event; the status shows it until the service is changed)."""
    # An LLM engine's start takes minutes: never fail a wake-up the gateway still holds requests for.
    seconds = max(settings.FERRY_ACTIVATION_DEADLINE_SECONDS, activation_timeout_seconds(service))
    deadline = timedelta(seconds=seconds)
    verdict = activation_verdict(service.activation, generation=service.generation,
                                 ready=any(o.ready for o in observed), now=timezone.now(), deadline=deadline)
    if verdict is Verdict.CLEAR:
        service.activation = None
        Service.objects.filter(pk=service.pk).update(activation=None)
    elif verdict is Verdict.EXPIRED:
        why = "; ".join(f"{o.name}: {o.last_exit_reason or o.state}" for o in observed) or "no instance started"
        message = (f"No instance of {service.name} became ready within {seconds} s "
                   f"of its wake-up from zero ({why}); it stays at zero until the service is changed")
        service.activation = Activation.from_json(service.activation).fail(message).to_json()
        service.autoscaled_instances = 0
        Service.objects.filter(pk=service.pk).update(activation=service.activation, autoscaled_instances=0)
        event_record(service=service, reason="ActivationFailed", warning=True, message=message)


def _plan(service: Service, observed, *, ready: Counter | None = None, total: int | None = None) -> Plan:
    """`ready` and `total` default to the observed instances and the service's count (a pool model gives its
    own: deployer/mesh/members.py)."""
    total = service_instance_count(service) if total is None else total
    rollout = rollout_of(service.rollout)
    if rollout is None:  # no rollout: the plan is what was asked
        return steady_plan(weights={v.number: v.asked_weight for v in service.versions.all()}, total=total)
    # A rollout is the ask: it moves traffic on from where it stands now, the applied weights.
    weights = {v.number: v.weight for v in service.versions.all()}
    ready = Counter(o.version for o in observed if o.ready) if ready is None else ready
    rolling = RollingLimits.of(_rolling_strategy(service), total)
    return rollout_plan(rollout, total=total, ready=ready, weights=weights, now=timezone.now(),
                        deadline=service_deadline(service), service=service.name, rolling=rolling)


def _rolling_strategy(service: Service) -> dict | None:
    return service.spec.get("metadata", {}).get("rolling_strategy")


def _failing_target(service: Service, failures: dict) -> int | None:
    """The target of the rollout in progress when it is among the versions that cannot start."""
    rollout = rollout_of(service.rollout)
    if rollout is None or not rollout.in_progress or rollout.to_version not in failures:
        return None
    return rollout.to_version


def _fail_rollout(service: Service, error: PermanentError, observed) -> Plan:
    """The new version cannot even start (its model is missing, say): it never gets traffic."""
    failed = Rollout.from_json(service.rollout).fail(error.message)
    service.rollout = failed.to_json()
    event_record(service=service, reason="RolloutFailed", warning=True,
                 message=f"Aborted the rollout of version {failed.to_version} of {service.name}: {error.message}")
    return _plan(service, observed)


def _follow_plan(service: Service, generation: int, plan: Plan) -> Plan:
    """Writes the plan's weights as applied (Version.weight) and its rollout record, unless the user changed the
    service meanwhile (then the reconcile their change queued plans again). The asked weights are the user's,
    except when a rollout ends: then they become its outcome, as a Deployment's spec follows a finished
    rollout."""
    with transaction.atomic():
        current = Service.objects.select_for_update().get(pk=service.pk)
        if current.generation != generation:
            return plan
        for version in service.versions.all():
            weight = plan.weights.get(version.number, 0)
            changed = ["weight"] if version.weight != weight else []
            if plan.rolled_out is not None and version.requested_weight != weight:
                changed.append("requested_weight")
            version.weight = weight
            if plan.rolled_out is not None:
                version.requested_weight = weight
            if changed:
                version.save(update_fields=changed)
        fields = {"rollout": plan.rollout.to_json() if plan.rollout else None}
        if plan.rolled_out is not None:
            fields["last_rolled_out_version"] = plan.rolled_out
        Service.objects.filter(pk=service.pk).update(**fields)
        for name, value in fields.items():
            setattr(service, name, value)
        for reason, message, warning in plan.events:
            event_record(service=service, reason=reason, message=message, warning=warning)
    return plan


def _restart_requested_instances(service: Service, driver) -> None:
    for instance in service.instances.filter(restart_requested_at__isnull=False):
        driver.restart_instance(service, instance.name)
        instance.restart_requested_at = None
        instance.save(update_fields=["restart_requested_at", "updated_at"])
        event_record(service=service, reason="RestartedInstance", instance_name=instance.name,
                     message=f"Restarted instance {instance.name} on request")


def _status(service: Service, prepared: Prepared, observed) -> Status:
    return _derived_status(service, prepared.expected, [o for o in observed if prepared.counts(o)], observed)


def _derived_status(service: Service, expected: int, wanted, observed) -> Status:
    serving_versions = {v.number for v in service.versions.all() if v.weight > 0}
    # Pending counts: a process may be starting for it, and "Stopped" must mean that nothing runs.
    live = [o for o in observed if o.state not in ("Terminated", "Failed")]
    verdicts = _crash_verdicts(service, wanted)
    status = derive_status(StatusInput(
        running=service.desired_state == "running",
        deleting=False,
        expected=expected,
        ready=sum(1 for o in wanted if o.ready),
        live=len(live),
        crash_looping=[f"{o.name}: {o.last_exit_reason or o.state}" for o in wanted if verdicts[o.name] == FAILING],
        restarting=tuple(f"{o.name}: {o.last_exit_reason or o.state}" for o in wanted
                         if verdicts[o.name] == RESTARTING),
        new_version_rolling=any(o.version not in serving_versions for o in live),
        first_rollout=not any(c["type"] == "Ready" and c["status"] == "True" for c in service.conditions)
        and service.phase in (Phase.CREATING, Phase.WAITING),
    ))
    return _after_failed_activation(service, _while_rolling_out(rollout_of(service.rollout), status))


def _crash_verdicts(service: Service, wanted) -> dict[str, str]:
    """crash_verdict per instance. An Instance row is written when a crash is first seen and not again until
    the instance restarts, so while it waits in CrashLoopBackOff its `updated_at` is when it exited."""
    seen_at = dict(service.instances.values_list("name", "updated_at"))
    now = timezone.now()
    failing = service.status_reason == "InstancesFailing"
    return {o.name: crash_verdict(o.state, o.restart_count, o.started_at, seen_at.get(o.name, now), failing)
            for o in wanted}


def _while_rolling_out(rollout: Rollout | None, status: Status) -> Status:
    """A rollout still moving (`Rollout.moving`) is progress, even when every instance is ready: the service is
    Updating until it finishes or rests waiting for the user."""
    if rollout is None or not rollout.moving or status.phase != Phase.RUNNING:
        return status
    message = f"rolling out version {rollout.to_version} ({rollout.strategy}); {status.message}"
    return Status(Phase.UPDATING, status.ready, True, status.degraded, "RollingOut", message)


def _after_failed_activation(service: Service, status: Status) -> Status:
    """A service whose wake-up from zero failed is Failed at zero (not a Running service with 0/0 ready). Had an
    instance become ready, _follow_activation would have forgotten the wake-up."""
    activation = activation_of(service.activation)
    if activation is None or not activation.failed_for(service.generation):
        return status
    return Status(Phase.FAILED, False, False, True, "ActivationFailed", activation.message)


def _finalize_deletion(service: Service, driver) -> Outcome:
    unpublish_route(service.name, service.cluster.name)  # the gateway stops routing first, then instances drain
    if driver.delete(service):
        with transaction.atomic():
            Service.objects.filter(pk=service.pk).delete()
        delete_queues(service.name, service.cluster.name)
        logger.info("Deleted service %s and everything it ran", service)
        return Outcome(Phase.DELETING)
    record_observed(service, driver.observe(service).instances)
    return Outcome(Phase.DELETING, status_writer.deleting(service))


def _without_driver(service: Service) -> Outcome:
    if service.deletion_requested_at is not None:
        # Nothing was ever applied to a cluster without a driver, so nothing remote needs removing.
        Service.objects.filter(pk=service.pk).delete()
        logger.info("Deleted service %s (nothing was running)", service)
        return Outcome(Phase.DELETING)
    return Outcome(Phase.WAITING, status_writer.waiting_for_cluster(service))
