"""One reconcile of one service: lock, observe, decide (pure), apply, write status.

Level-based: every run looks at the whole desired state and the whole observed state, so running it twice,
or after a crash, converges to the same place.
"""

import logging
from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from services.activations import activation_of
from services.models import Phase, Service, Version
from services.rollouts import Rollout, progress_deadline, rollout_of
from services.scale import service_instance_count
from services.services import event_record

from .activation import follow_activation
from .conditions import condition_set
from .desired import ObservedSlot, desired_slots
from .drivers import PermanentError, driver_for
from .fetches import FetchPending
from .instances import record_observed
from .launches import limits_message, token_env, version_launch
from .locks import reconcile_lock
from .progress import status_timed_out
from .pruning import prune_versions
from .rollout import Plan, RollingLimits, rollout_plan, steady_plan
from .routing import publish_route, unpublish_route
from .status import FAILING, RESTARTING, Status, StatusInput, crash_verdict, derive_status, while_fetching

logger = logging.getLogger("ferry.deployer")
RECHECK_WHILE_PROGRESSING = timedelta(seconds=2)
RECHECK_WHEN_STEADY = timedelta(seconds=30)


def reconcile(service_id: int) -> None:
    with reconcile_lock(service_id) as held:
        if not held:
            return  # another worker is on it; the sweep comes back if it misses a change
        service = Service.objects.select_related("cluster").filter(pk=service_id).first()
        if service is None:
            return
        driver = driver_for(service.cluster)
        if driver is None:
            _without_driver(service)
        elif service.deletion_requested_at is not None:
            _finalize_deletion(service, driver)
        else:
            _converge(service, driver)


def _converge(service: Service, driver) -> None:
    generation = service.generation
    observed = driver.observe(service).instances
    record_observed(service, observed)
    follow_activation(service, observed)
    plan = _follow_plan(service, generation, _plan(service, observed))
    if getattr(driver, "renders_manifests", False):
        _converge_rendered(service, driver, generation, plan, observed)
        return
    slots = _slots(service, plan, observed)
    desired, failures, fetching = _launches(service, driver, slots)
    target = _failing_target(service, failures)
    if target is not None:
        plan = _follow_plan(service, generation, _fail_rollout(service, failures[target], observed))
        slots = _slots(service, plan, observed)
        desired, failures, fetching = _launches(service, driver, slots)
    if failures:
        _write_failure(service, generation, next(iter(failures.values())))
        return
    created = driver.apply(service, desired)
    if created:
        logger.info("Asked the cluster to start %s", ", ".join(created))
    _restart_requested_instances(service, driver)
    observed = driver.observe(service).instances
    record_observed(service, observed)
    prune_versions(service)
    # Slots whose version is still being fetched count as expected: the service is not Running without them.
    expected = {name for name, _, _ in desired} | {slot.name for slot in slots if slot.version in fetching}
    _write_status(service, generation, while_fetching(_status(service, expected, observed), fetching))
    publish_route(service.pk)


def _converge_rendered(service: Service, driver, generation: int, plan: Plan, observed) -> None:
    """Clusters that run instances themselves (Kubernetes): the driver gets versions with their weights and
    replica counts, renders and applies them; the cluster names the pods."""
    failures = driver.version_failures(service, plan)
    target = _failing_target(service, failures)
    if target is not None:
        plan = _follow_plan(service, generation, _fail_rollout(service, failures[target], observed))
        failures = driver.version_failures(service, plan)
    try:
        if failures:
            raise next(iter(failures.values()))
        desired = driver.desired(service, plan)
        driver.apply(service, desired)
    except PermanentError as error:
        _write_failure(service, generation, error)
        return
    _restart_requested_instances(service, driver)
    observed = driver.observe(service).instances
    record_observed(service, observed)
    prune_versions(service)
    expected = driver.expected_instances(desired)
    wanted = [o for o in observed if o.version in expected]
    _write_status(service, generation, _derived_status(service, sum(expected.values()), wanted, observed))


def _plan(service: Service, observed) -> Plan:
    total = service_instance_count(service)
    weights = {v.number: v.weight for v in service.versions.all()}
    rollout = rollout_of(service.rollout)
    if rollout is None:
        return steady_plan(weights=weights, total=total)
    ready = Counter(o.version for o in observed if o.ready)
    rolling = RollingLimits.of(_rolling_strategy(service), total)
    return rollout_plan(rollout, total=total, ready=ready, weights=weights, now=timezone.now(),
                        deadline=_deadline(service), service=service.name, rolling=rolling)


def _rolling_strategy(service: Service) -> dict | None:
    return service.spec.get("metadata", {}).get("rolling_strategy")


def _deadline(service: Service) -> timedelta:
    return progress_deadline(_rolling_strategy(service), settings.FERRY_PROGRESS_DEADLINE_SECONDS)


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
    """Writes the plan's weights and rollout record, unless the user changed the service meanwhile (then the
    reconcile their change queued plans again)."""
    with transaction.atomic():
        current = Service.objects.select_for_update().get(pk=service.pk)
        if current.generation != generation:
            return plan
        for version in service.versions.all():
            weight = plan.weights.get(version.number, 0)
            if version.weight != weight:
                version.weight = weight
                version.save(update_fields=["weight"])
        fields = {"rollout": plan.rollout.to_json() if plan.rollout else None}
        if plan.rolled_out is not None:
            fields["last_rolled_out_version"] = plan.rolled_out
        Service.objects.filter(pk=service.pk).update(**fields)
        for name, value in fields.items():
            setattr(service, name, value)
        for reason, message, warning in plan.events:
            event_record(service=service, reason=reason, message=message, warning=warning)
    return plan


def _slots(service: Service, plan: Plan, observed):
    return desired_slots(
        service_name=service.name, running=service.desired_state == "running", replicas=plan.replicas,
        observed=[ObservedSlot(o.name, o.version, o.ready, o.state not in ("Terminated", "Failed")) for o in observed],
    )


def _restart_requested_instances(service: Service, driver) -> None:
    for instance in service.instances.filter(restart_requested_at__isnull=False):
        driver.restart_instance(service, instance.name)
        instance.restart_requested_at = None
        instance.save(update_fields=["restart_requested_at", "updated_at"])
        event_record(service=service, reason="RestartedInstance", instance_name=instance.name,
                     message=f"Restarted instance {instance.name} on request")


def _launches(service: Service, driver, slots):
    """Launch specs per slot; the versions that cannot be launched, with why; and the versions whose files are
    still being fetched (their slots wait, the rest of the service goes on), with what is fetched."""
    restart_token = service.restart_requested_at.isoformat() if service.restart_requested_at else ""
    in_use = driver.launches_in_use(service)
    by_version: dict[int, dict] = {}
    failures: dict[int, PermanentError] = {}
    fetching: dict[int, str] = {}
    for slot in slots:
        if slot.version in by_version or slot.version in failures or slot.version in fetching:
            continue
        try:
            by_version[slot.version] = _launch_for(service, slot.version, in_use, restart_token)
        except PermanentError as exc:
            failures[slot.version] = exc
        except FetchPending as pending:
            fetching[slot.version] = pending.url
        except Version.DoesNotExist:
            logger.info("Version %s of %s is gone (pruned); not launching it", slot.version, service)
    desired = [(s.name, s.version, by_version[s.version]) for s in slots if s.version in by_version]
    return desired, failures, fetching


def _launch_for(service: Service, number: int, in_use: dict[int, dict], restart_token: str) -> dict:
    if number in in_use:
        launch = {**in_use[number], "restart_token": restart_token}
        if launch.get("token_sha256") != token_env(service)["token_sha256"]:
            launch.update(token_env(service))  # the token was rotated: instances restart with the new one
        return launch
    version = service.versions.get(number=number)
    launch = version_launch(service, version, restart_token=restart_token)
    event_record(service=service, reason="AppliedLimits", message=limits_message(service, version))
    return launch


def _status(service: Service, desired_names: set[str], observed) -> Status:
    wanted = [o for o in observed if o.name in desired_names]
    return _derived_status(service, len(desired_names), wanted, observed)


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
    instance become ready, follow_activation would have forgotten the wake-up."""
    activation = activation_of(service.activation)
    if activation is None or not activation.failed_for(service.generation):
        return status
    return Status(Phase.FAILED, False, False, True, "ActivationFailed", activation.message)


def _write_status(service: Service, generation: int, status: Status) -> None:
    now = timezone.now()
    conditions = service.conditions
    conditions = condition_set(conditions, type="Ready", status=status.ready, reason=status.reason,
                               message=status.message, generation=generation, now=now)
    conditions = condition_set(conditions, type="Progressing", status=status.progressing, reason=status.reason,
                               message=status.message, generation=generation, now=now)
    degraded, reason, message = _degradation(service, status, conditions, now)
    conditions = condition_set(conditions, type="Degraded", status=degraded, reason=reason, message=message,
                               generation=generation, now=now)
    recheck = RECHECK_WHILE_PROGRESSING if status.progressing else RECHECK_WHEN_STEADY
    _save_status(service, generation, status.phase, status.reason, status.message, conditions, now + recheck)


def _degradation(service: Service, status: Status, conditions: list[dict], now) -> tuple[bool, str, str]:
    """Progressing for longer than the deadline outside a rollout is Degraded (ReconcileTimeout), as is a
    crash loop; a rollout keeps its own clock (deployer/progress.py)."""
    if status.degraded:
        return True, status.reason, status.message
    rollout = rollout_of(service.rollout)
    if rollout is not None and rollout.failed:
        return True, "RolloutFailed", rollout.message
    progressing = next(c for c in conditions if c["type"] == "Progressing")
    since = datetime.fromisoformat(progressing["last_transition_time"]) if progressing["status"] == "True" else None
    deadline = _deadline(service)
    if status_timed_out(rollout=rollout, progressing_since=since, now=now, deadline=deadline):
        seconds = int(deadline.total_seconds())
        return True, "ReconcileTimeout", f"Still progressing after {seconds} s: {status.message}"
    return False, status.reason, status.message


def _save_status(service: Service, generation: int, phase: str, reason: str, message: str,
                 conditions: list[dict], next_at) -> None:
    if phase != service.phase:
        event_record(service=service, reason=f"Became{phase}", warning=phase == Phase.FAILED,
                     message=f"Service {service.name} is {phase}: {message}")
    if _newly_degraded(service.conditions, conditions):
        event_record(service=service, reason="ReconcileTimeout", warning=True, message=message)
    Service.objects.filter(pk=service.pk).update(
        phase=phase, status_reason=reason, status_message=message, conditions=conditions,
        observed_generation=generation, next_reconcile_at=next_at, updated_at=timezone.now(),
    )


def _newly_degraded(before: list[dict], after: list[dict]) -> bool:
    def degraded_by_timeout(conditions):
        return any(c["type"] == "Degraded" and c["status"] == "True" and c["reason"] == "ReconcileTimeout"
                   for c in conditions)
    return degraded_by_timeout(after) and not degraded_by_timeout(before)


def _write_failure(service: Service, generation: int, error: PermanentError) -> None:
    """Permanent: retrying cannot help until the user changes something, so do not recheck on a timer."""
    now = timezone.now()
    conditions = condition_set(service.conditions, type="Ready", status=False, reason=error.reason,
                               message=error.message, generation=generation, now=now)
    conditions = condition_set(conditions, type="Progressing", status=False, reason=error.reason,
                               message=error.message, generation=generation, now=now)
    conditions = condition_set(conditions, type="Degraded", status=True, reason=error.reason,
                               message=error.message, generation=generation, now=now)
    if service.status_reason != error.reason:
        event_record(service=service, reason=error.reason, warning=True, message=error.message)
    Service.objects.filter(pk=service.pk).update(
        phase=Phase.FAILED, status_reason=error.reason, status_message=error.message, conditions=conditions,
        observed_generation=generation, next_reconcile_at=None, updated_at=now,
    )
    publish_route(service.pk)  # instances of an older version may still serve


def _finalize_deletion(service: Service, driver) -> None:
    unpublish_route(service.name, service.cluster.name)  # the gateway stops routing first, then instances drain
    if driver.delete(service):
        with transaction.atomic():
            Service.objects.filter(pk=service.pk).delete()
        logger.info("Deleted service %s and everything it ran", service)
        return
    record_observed(service, driver.observe(service).instances)
    Service.objects.filter(pk=service.pk).update(
        phase=Phase.DELETING, observed_generation=service.generation,
        next_reconcile_at=timezone.now() + RECHECK_WHILE_PROGRESSING,
    )


def _without_driver(service: Service) -> None:
    if service.deletion_requested_at is not None:
        # Nothing was ever applied to a cluster without a driver, so nothing remote needs removing.
        Service.objects.filter(pk=service.pk).delete()
        logger.info("Deleted service %s (nothing was running)", service)
        return
    message = (
        f'Cluster "{service.cluster.name}" ({service.cluster.kind}) has no usable driver or connection; '
        "the desired state is stored and will be applied when it has one."
    )
    now = timezone.now()
    conditions = condition_set(service.conditions, type="Ready", status=False, reason="WaitingForCluster",
                               message=message, generation=service.generation, now=now)
    Service.objects.filter(pk=service.pk, generation=service.generation).update(
        phase=Phase.WAITING, status_reason="WaitingForCluster", status_message=message,
        conditions=conditions, observed_generation=service.generation, updated_at=now,
    )
