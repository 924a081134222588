"""Writes to rollouts: how a new version takes traffic, and the user's actions on a rollout in progress.

These only record intent in `Service.rollout`; the reconciler follows it (deployer/rollout.py) and moves the
weights as instances become ready, so a version that is not ready never receives traffic.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from services.errors import Conflict, InvalidRequest
from services.models import Service, Version

from .catalog import desired_state_changed
from .events import event_record

STRATEGIES = ("rolling", "canary", "blue-green")


def rollout_begin(service: Service, version: Version, *, strategy: str, canary_weight: int | None) -> None:
    """Called inside an update that created `version`: it starts at 0 % and the strategy decides the rest."""
    if strategy not in STRATEGIES:
        raise InvalidRequest.at("rollout.strategy", f"must be one of {', '.join(STRATEGIES)}")
    if service.rollout and service.rollout.get("state") != "Failed":
        event_record(service=service, reason="SupersededRollout",
                     message=f"Version {version.number} of {service.name} replaced the rollout of version "
                             f"{service.rollout['to_version']}")
    service.rollout = _record(strategy, service.last_rolled_out_version, version.number,
                              canary_weight=_canary_weight(strategy, canary_weight))
    event_record(service=service, reason="StartedRollout",
                 message=f"Started a {strategy} rollout of {service.name}: version "
                         f"{service.last_rolled_out_version} -> {version.number}")


def _record(strategy: str, from_version: int | None, to_version: int, *, canary_weight: int = 0,
            message: str = "") -> dict:
    """A rollout record (its fields are described in deployer/rollout.py)."""
    now = timezone.now().isoformat()
    return {
        "strategy": strategy,
        "from_version": from_version,
        "to_version": to_version,
        "state": "Progressing",
        "canary_weight": canary_weight,
        "started_at": now,
        "retain_until": None,
        "message": message,
        "progress_at": now,
        "ready_seen": 0,
    }


def _clock_restarted(rollout: dict) -> dict:
    """The plan asks for something new (or resumes): the progress deadline counts from now
    (deployer/progress.py)."""
    return {**rollout, "progress_at": timezone.now().isoformat()}


def all_traffic_to(service: Service, number: int) -> int | None:
    """Gives version `number` of a locked service all traffic; returns the version that serves meanwhile, or None
    when the move is immediate (the caller saves the service).

    Immediate when `number` has a ready instance (a rollback during a canary, or while blue stays warm), or when
    no other version has one (nothing could serve meanwhile). Otherwise its instances are gone (stopped after a
    later version rolled out): the move is a rolling rollout back to it, so the version serving now keeps its
    instances and traffic until `number`'s instances are ready, then hands over (deployer/rollout.py), and no
    request waits for a cold start. The plan moves `last_rolled_out_version` when it is done; a version that
    cannot start (its model is gone) fails the rollout and traffic stays where it is.
    """
    meanwhile = _serving_meanwhile(service, number)
    keep = number if meanwhile is None else meanwhile
    service.versions.exclude(number=keep).update(weight=0)
    service.versions.filter(number=keep).update(weight=100)
    if meanwhile is None:
        service.rollout = None
        service.last_rolled_out_version = number
    else:
        service.rollout = _record("rolling", meanwhile, number,
                                  message=f"rolling back: version {meanwhile} serves until version {number} is ready")
    return meanwhile


def _serving_meanwhile(service: Service, number: int) -> int | None:
    """The version with traffic and ready instances that keeps serving while `number` starts, if it must."""
    ready = set(service.instances.filter(ready=True).values_list("version__number", flat=True))
    if number in ready:
        return None
    serving = service.versions.filter(weight__gt=0, number__in=ready).exclude(number=number)
    return serving.order_by("-weight", "-number").values_list("number", flat=True).first()


def _canary_weight(strategy: str, weight: int | None) -> int:
    if strategy != "canary":
        return 0
    weight = 10 if weight is None else weight
    if not 0 <= weight <= 100:
        raise InvalidRequest.at("rollout.canary_weight", "must be an integer between 0 and 100")
    return weight


def _in_progress(service: Service, *, strategies=STRATEGIES, states=("Progressing", "Paused", "AwaitingSwitch",
                                                                     "Switched")) -> dict:
    rollout = service.rollout
    if not rollout or rollout["state"] not in states or rollout["strategy"] not in strategies:
        wanted = " or ".join(strategies)
        raise Conflict(f"Service {service.name} has no {wanted} rollout in a state that allows this.",
                       code="NoRolloutInProgress")
    return rollout


def _changed(service: Service, rollout: dict | None, reason: str, message: str) -> Service:
    service.rollout = rollout
    event_record(service=service, reason=reason, message=message)
    return desired_state_changed(service)


def _locked(service: Service) -> Service:
    return Service.objects.select_for_update().get(pk=service.pk)


@transaction.atomic
def rollout_set_canary_weight(*, actor, service: Service, weight: int) -> Service:
    service = _locked(service)
    rollout = _in_progress(service, strategies=("canary",), states=("Progressing", "Paused"))
    weighted = _clock_restarted({**rollout, "canary_weight": _canary_weight("canary", weight)})
    return _changed(service, weighted, "SetCanaryWeight",
                    f"Set the canary of {service.name} (version {rollout['to_version']}) to {weight} %")


@transaction.atomic
def rollout_promote(*, actor, service: Service) -> Service:
    """The new version takes all traffic as fast as its instances are ready (a rolling finish)."""
    service = _locked(service)
    rollout = _in_progress(service)
    promoted = _clock_restarted({**rollout, "strategy": "rolling", "state": "Progressing", "message": "promoted"})
    return _changed(service, promoted, "Promoted", f"Promoted version {rollout['to_version']} of {service.name}")


@transaction.atomic
def rollout_rollback(*, actor, service: Service) -> Service:
    """Back to the last rolled-out version; the new version's instances stop. With no rollout in progress, back
    to the version before the last rolled-out one. At once when that version has ready instances (it keeps
    them during a canary and a blue-green rollout); else see `all_traffic_to`."""
    service = _locked(service)
    if not service.rollout:
        return _rollback_to_previous(actor, service)
    rollout = _in_progress(service, states=("Progressing", "Paused", "AwaitingSwitch", "Switched", "Failed"))
    back_to = rollout["from_version"]
    if back_to is None:
        raise Conflict(f"Service {service.name} has no earlier version to roll back to.", code="NothingToRollBackTo")
    meanwhile = all_traffic_to(service, back_to)
    message = f"Rolled {service.name} back from version {rollout['to_version']} to version {back_to}"
    if meanwhile is not None:
        message = (f"Rolling {service.name} back from version {rollout['to_version']} to version {back_to}: "
                   f"version {meanwhile} serves until version {back_to}'s instances are ready")
    return _changed(service, service.rollout, "RolledBack", message)


def _rollback_to_previous(actor, service: Service) -> Service:
    from .traffic import version_rollback

    previous = (service.versions.filter(number__lt=service.last_rolled_out_version or 0)
                .order_by("-number").values_list("number", flat=True).first())
    if previous is None:
        raise Conflict(f"Service {service.name} has no earlier version to roll back to.", code="NothingToRollBackTo")
    return version_rollback(actor=actor, service=service, number=previous)


@transaction.atomic
def rollout_pause(*, actor, service: Service) -> Service:
    service = _locked(service)
    rollout = _in_progress(service, strategies=("rolling", "canary"), states=("Progressing",))
    return _changed(service, {**rollout, "state": "Paused"}, "PausedRollout",
                    f"Paused the rollout of version {rollout['to_version']} of {service.name}")


@transaction.atomic
def rollout_resume(*, actor, service: Service) -> Service:
    service = _locked(service)
    rollout = _in_progress(service, strategies=("rolling", "canary"), states=("Paused",))
    return _changed(service, _clock_restarted({**rollout, "state": "Progressing"}), "ResumedRollout",
                    f"Resumed the rollout of version {rollout['to_version']} of {service.name}")


@transaction.atomic
def rollout_switch(*, actor, service: Service) -> Service:
    """Blue-green: all traffic moves to green in one routing update; blue stays warm until finish or retention."""
    service = _locked(service)
    rollout = _in_progress(service, strategies=("blue-green",), states=("AwaitingSwitch",))
    old, new = rollout["from_version"], rollout["to_version"]
    service.versions.update(weight=0)
    service.versions.filter(number=new).update(weight=100)
    service.last_rolled_out_version = new
    retain_until = timezone.now() + timedelta(seconds=settings.FERRY_BLUE_GREEN_RETENTION_SECONDS)
    switched = {**rollout, "state": "Switched", "retain_until": retain_until.isoformat()}
    return _changed(service, switched, "SwitchedTraffic",
                    f"Switched {service.name} from version {old} to version {new}; version {old} stays warm "
                    f"until finish or {retain_until:%Y-%m-%d %H:%M} UTC")


@transaction.atomic
def rollout_finish(*, actor, service: Service) -> Service:
    service = _locked(service)
    rollout = _in_progress(service, strategies=("blue-green",), states=("Switched",))
    return _changed(service, None, "FinishedRollout",
                    f"Finished the blue-green rollout of {service.name}; version {rollout['from_version']} stops")
