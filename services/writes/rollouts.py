"""Writes to rollouts: how a new version takes traffic, and the user's actions on a rollout in progress.

These only record intent in `Service.rollout`, moving the record with its own transitions (services/rollouts.py
refuses a move its state does not allow; here that becomes the API's 409 NoRolloutInProgress); the reconciler
follows it (deployer/rollout.py) and moves the weights as instances become ready, so a version that is not
ready never receives traffic.
"""

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from services.errors import Conflict, InvalidRequest
from services.models import Service, Version
from services.rollouts import InvalidRollout, Rollout, RolloutRefused, Strategy, refusal, rollout_of

from .catalog import desired_state_changed
from .events import event_record


def _refused(refused: RolloutRefused) -> Conflict:
    return Conflict(refused.message, code=refused.code)


def _invalid(error: InvalidRollout) -> InvalidRequest:
    return InvalidRequest.at(error.field, error.message)


def rollout_begin(service: Service, version: Version, *, strategy: str, canary_weight: int | None,
                  actor=None) -> None:
    """Called inside an update that created `version`: it starts at 0 % and the strategy decides the rest."""
    try:
        started = Rollout.start(strategy, service.last_rolled_out_version, version.number, now=timezone.now(),
                                canary_weight=canary_weight)
    except InvalidRollout as error:
        raise _invalid(error) from None
    superseded = rollout_of(service.rollout)
    if superseded is not None and superseded.in_progress:
        event_record(service=service, reason="SupersededRollout",
                     message=f"Version {version.number} of {service.name} replaced the rollout of version "
                             f"{superseded.to_version}", actor=actor)
    service.rollout = started.to_json()
    # The user asked for a rollout, not for shares: until it ends, traffic is what it decides (None).
    service.versions.update(requested_weight=None)
    event_record(service=service, reason="StartedRollout",
                 message=f"Started a {strategy} rollout of {service.name}: version "
                         f"{service.last_rolled_out_version} -> {version.number}", actor=actor)


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
    asked_all_traffic_to(service, keep)
    if meanwhile is None:
        service.rollout = None
        service.last_rolled_out_version = number
    else:
        service.rollout = Rollout.start(
            Strategy.ROLLING, meanwhile, number, now=timezone.now(),
            message=f"rolling back: version {meanwhile} serves until version {number} is ready").to_json()
    return meanwhile


def asked_all_traffic_to(service: Service, number: int) -> None:
    """The ask (Version.requested_weight) that version `number` has all traffic; the reconciler applies it."""
    service.versions.exclude(number=number).update(requested_weight=0)
    service.versions.filter(number=number).update(requested_weight=100)


def _serving_meanwhile(service: Service, number: int) -> int | None:
    """The version with traffic and ready instances that keeps serving while `number` starts, if it must:
    traffic as asked (a share asked a moment ago counts), else as the rollout has it."""
    ready = set(service.instances.filter(ready=True).values_list("version__number", flat=True))
    if number in ready:
        return None
    serving = [v for v in service.versions.filter(number__in=ready).exclude(number=number) if v.asked_weight > 0]
    return max(serving, key=lambda v: (v.asked_weight, v.number)).number if serving else None


def _transition(service: Service, action: str,
                move: Callable[[Rollout], Rollout | None]) -> tuple[Rollout, Rollout | None]:
    """The record before and after `move`; a move its state refuses (or no rollout at all) is the API's 409, a
    bad value its 400."""
    before = rollout_of(service.rollout)
    if before is None:
        raise _refused(refusal(action, service.name))
    try:
        return before, move(before)
    except RolloutRefused as refused:
        raise _refused(refused) from None
    except InvalidRollout as error:
        raise _invalid(error) from None


def _changed(actor, service: Service, rollout: Rollout | None, reason: str, message: str) -> Service:
    service.rollout = rollout.to_json() if rollout else None
    event_record(service=service, reason=reason, message=message, actor=actor)
    return desired_state_changed(service)


def _locked(service: Service) -> Service:
    return Service.objects.select_for_update().get(pk=service.pk)


@transaction.atomic
def rollout_set_canary_weight(*, actor, service: Service, weight: int) -> Service:
    service = _locked(service)
    before, weighted = _transition(service, "set_canary_weight",
                                   lambda r: r.set_canary_weight(weight, now=timezone.now(), service=service.name))
    return _changed(actor, service, weighted, "SetCanaryWeight",
                    f"Set the canary of {service.name} (version {before.to_version}) to {weight} %")


@transaction.atomic
def rollout_promote(*, actor, service: Service) -> Service:
    """The new version takes all traffic as fast as its instances are ready (a rolling finish)."""
    service = _locked(service)
    before, promoted = _transition(service, "promote", lambda r: r.promote(now=timezone.now(), service=service.name))
    return _changed(actor, service, promoted, "Promoted", f"Promoted version {before.to_version} of {service.name}")


@transaction.atomic
def rollout_rollback(*, actor, service: Service) -> Service:
    """Back to the last rolled-out version; the new version's instances stop. With no rollout in progress, back
    to the version before the last rolled-out one. At once when that version has ready instances (it keeps
    them during a canary and a blue-green rollout); else see `all_traffic_to`."""
    service = _locked(service)
    if not service.rollout:
        return _rollback_to_previous(actor, service)
    rollout, back_to = _transition(service, "rollback", lambda r: r.rollback_target(service=service.name))
    meanwhile = all_traffic_to(service, back_to)
    message = f"Rolled {service.name} back from version {rollout.to_version} to version {back_to}"
    if meanwhile is not None:
        message = (f"Rolling {service.name} back from version {rollout.to_version} to version {back_to}: "
                   f"version {meanwhile} serves until version {back_to}'s instances are ready")
    return _changed(actor, service, rollout_of(service.rollout), "RolledBack", message)


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
    before, paused = _transition(service, "pause", lambda r: r.pause(service=service.name))
    return _changed(actor, service, paused, "PausedRollout",
                    f"Paused the rollout of version {before.to_version} of {service.name}")


@transaction.atomic
def rollout_resume(*, actor, service: Service) -> Service:
    service = _locked(service)
    before, resumed = _transition(service, "resume", lambda r: r.resume(now=timezone.now(), service=service.name))
    return _changed(actor, service, resumed, "ResumedRollout",
                    f"Resumed the rollout of version {before.to_version} of {service.name}")


@transaction.atomic
def rollout_switch(*, actor, service: Service) -> Service:
    """Blue-green: all traffic moves to green in one routing update; blue stays warm until finish or retention."""
    service = _locked(service)
    retain_until = timezone.now() + timedelta(seconds=settings.FERRY_BLUE_GREEN_RETENTION_SECONDS)
    before, switched = _transition(service, "switch",
                                   lambda r: r.switch(retain_until=retain_until, service=service.name))
    old, new = before.from_version, before.to_version
    asked_all_traffic_to(service, new)
    service.last_rolled_out_version = new
    return _changed(actor, service, switched, "SwitchedTraffic",
                    f"Switched {service.name} from version {old} to version {new}; version {old} stays warm "
                    f"until finish or {retain_until:%Y-%m-%d %H:%M} UTC")


@transaction.atomic
def rollout_finish(*, actor, service: Service) -> Service:
    service = _locked(service)
    before, finished = _transition(service, "finish", lambda r: r.finish(service=service.name))
    return _changed(actor, service, finished, "FinishedRollout",
                    f"Finished the blue-green rollout of {service.name}; version {before.from_version} stops")
