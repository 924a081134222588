"""Rollout plans: from a rollout's intent and what is ready, the replicas and traffic weight of each version.

Pure. The reconciler feeds it and writes the weights it returns as applied (`Version.weight`); user actions
(promote, rollback, switch, finish, pause, canary weight) only change the rollout record or the asked weights
(`Version.requested_weight`), then the next plan follows. With no rollout the plan is what was asked
(`steady_plan` of the asked weights); during one, the rollout is the ask and it moves traffic on from where it
stands (`rollout_plan` of the applied weights); when it ends, the asked weights become its outcome.

The rollout record, its states and transitions are `services.rollouts.Rollout`'s (the one owner); this module
only plans a step and calls its transitions (a green that became ready, a failure, the progress clock). A
finished rollout is removed (the plan's `rollout` is None) and the target becomes the last rolled-out version.
"""

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from services.rollouts import Rollout, RolloutState, Strategy


@dataclass(frozen=True)
class Plan:
    replicas: dict[int, int]  # instances wanted per version (versions not named get none)
    weights: dict[int, int]  # traffic per version, summing to 100 when anything serves
    rollout: Rollout | None  # the rollout record after this step; None when finished
    rolled_out: int | None = None  # set when the target became the last rolled-out version
    events: list[tuple[str, str, bool]] = field(default_factory=list)  # (reason, message, warning)


def steady_plan(*, weights: dict[int, int], total: int) -> Plan:
    """No rollout: each version with traffic gets its share of the instances (at least one)."""
    serving = {number: weight for number, weight in weights.items() if weight > 0}
    replicas = {number: max(1, math.ceil(total * weight / 100)) for number, weight in serving.items()} if total else {}
    return Plan(replicas=replicas, weights=weights, rollout=None)


@dataclass(frozen=True)
class RollingLimits:
    """metadata.rolling_strategy, resolved to instance counts for a service of `total` instances: how many may
    run above the total (max_surge) and how many of the total may be missing from the ready ones
    (max_unavailable) while a rolling update runs. Defaults as on Kubernetes clusters: 1 and 0."""

    max_surge: int = 1
    max_unavailable: int = 0

    @classmethod
    def of(cls, rolling_strategy: dict | None, total: int) -> "RollingLimits":
        rolling = rolling_strategy or {}
        surge = _count(rolling.get("max_surge", 1), total, round_up=True)
        unavailable = _count(rolling.get("max_unavailable", 0), total, round_up=False)
        if surge == 0 and unavailable == 0:
            surge = 1  # both zero could never make progress (Kubernetes refuses it); add one at a time
        return cls(max_surge=surge, max_unavailable=unavailable)


def _count(value: int | str, total: int, *, round_up: bool) -> int:
    """An instance count, or a percentage of `total` (surge rounds up, unavailable down, as Kubernetes does)."""
    if isinstance(value, str) and value.endswith("%"):
        share = total * int(value[:-1]) / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(value)


def rollout_plan(rollout: Rollout, *, total: int, ready: dict[int, int], weights: dict[int, int], now: datetime,
                 deadline: timedelta, service: str, rolling: RollingLimits = RollingLimits()) -> Plan:
    """The step the rollout takes now; it fails when the new version's instances this step asks for made no
    progress within `deadline` (deployer/progress.py)."""
    if rollout.failed:
        return _failed_plan(rollout, total)
    plan = _step(rollout, total, ready, weights, now, service, rolling)
    if plan.rollout is None:
        return plan
    new = rollout.to_version
    ready_new, asked_new = ready.get(new, 0), plan.replicas.get(new, 0)
    record = plan.rollout.clock_moved(ready_new=ready_new, asked_new=asked_new, now=now)
    if record.timed_out(ready_new=ready_new, asked_new=asked_new, now=now, deadline=deadline):
        return _abort(record, total, ready_new, asked_new, service, deadline)
    return replace(plan, rollout=record)


def _step(rollout, total, ready, weights, now, service, rolling: RollingLimits) -> Plan:
    if rollout.strategy is Strategy.CANARY:
        return _canary(rollout, total, ready, weights, service)
    if rollout.strategy is Strategy.BLUE_GREEN:
        return _blue_green(rollout, total, ready, now, service)
    return _rolling(rollout, total, ready, weights, service, rolling)


def _rolling(rollout: Rollout, total, ready, weights, service, rolling: RollingLimits) -> Plan:
    old, new = rollout.from_version, rollout.to_version
    ready_new = min(ready.get(new, 0), total)
    if old is None or total == 0 or ready_new >= total:
        return _done(rollout, {new: total}, service)
    replicas = _rolling_replicas(total, ready_new, rolling)
    replicas = {new: replicas[0], old: replicas[1]}
    if rollout.state is RolloutState.PAUSED:
        return Plan(replicas=replicas, weights=weights, rollout=rollout)
    share = _rolling_share(ready.get(old, 0), ready_new, total, weights.get(new, 0))
    new_weights = {old: 100 - share, new: share}
    return Plan(replicas=replicas, weights=new_weights, rollout=rollout,
                events=_shift_events(weights, new_weights, service))


def _rolling_replicas(total: int, ready_new: int, rolling: RollingLimits) -> tuple[int, int]:
    """(new, old) instances for this step: old ones stop as new ones become ready, keeping at least
    total - max_unavailable ready; new ones start as far as total + max_surge allows."""
    keep_old = max(0, total - rolling.max_unavailable - ready_new)
    start_new = min(total, max(ready_new, total + rolling.max_surge - keep_old))
    return start_new, keep_old


def _rolling_share(old_ready: int, new_ready: int, total: int, current: int) -> int:
    """The new version's traffic follows its share of ready instances; nothing old serving: all of it."""
    if new_ready == 0:
        return 0 if old_ready else current
    if old_ready == 0:
        return 100
    return round(100 * new_ready / total)


def _canary(rollout: Rollout, total, ready, weights, service) -> Plan:
    old, new, share = rollout.from_version, rollout.to_version, rollout.canary_weight
    replicas = {new: max(1, math.ceil(total * share / 100)) if total else 0}
    if old is not None:
        replicas[old] = total
    if old is None:
        return Plan(replicas=replicas, weights={new: 100}, rollout=rollout)
    # The canary takes its share only once it can answer: a version that is not ready gets no traffic.
    new_weights = {old: 100 - share, new: share} if ready.get(new, 0) else {old: 100, new: 0}
    if rollout.state is RolloutState.PAUSED:
        new_weights = {old: weights.get(old, 100), new: weights.get(new, 0)}
    return Plan(replicas=replicas, weights=new_weights, rollout=rollout,
                events=_shift_events(weights, new_weights, service))


def _blue_green(rollout: Rollout, total, ready, now, service) -> Plan:
    old, new = rollout.from_version, rollout.to_version
    if rollout.state is RolloutState.SWITCHED:
        if rollout.retain_until and now >= rollout.retain_until:
            return _done(rollout, {new: total}, service, message="retention passed")
        return Plan(replicas={new: total, old: total}, weights={new: 100, old: 0}, rollout=rollout)
    replicas = {new: total} if old is None else {new: total, old: total}
    weights = {new: 100} if old is None else {old: 100, new: 0}
    events = []
    if rollout.state is RolloutState.PROGRESSING and ready.get(new, 0) >= total:
        rollout = rollout.green_ready()
        events.append(("GreenReady", f"Version {new} of {service} is ready at 0 % and awaits the switch", False))
    return Plan(replicas=replicas, weights=weights, rollout=rollout, events=events)


def _done(rollout: Rollout, replicas, service, message: str = "") -> Plan:
    new = rollout.to_version
    note = f" ({message})" if message else ""
    return Plan(replicas=replicas, weights={new: 100}, rollout=None, rolled_out=new,
                events=[("RolledOut", f"Rolled out version {new} of {service}{note}", False)])


def _abort(rollout: Rollout, total, ready_new: int, asked_new: int, service, deadline: timedelta) -> Plan:
    old, new = rollout.from_version, rollout.to_version
    reason = (f"version {new} had {ready_new} of the {asked_new} instance(s) it needs ready, with no progress "
              f"for {int(deadline.total_seconds())} s (the progress deadline)")
    failed = rollout.fail(reason)
    plan = _failed_plan(failed, total)
    event = ("RolloutFailed", f"Aborted the rollout of version {new} of {service}: {reason}; "
                              f"traffic stays on version {old}", True)
    return Plan(replicas=plan.replicas, weights=plan.weights, rollout=failed, events=[event])


def _failed_plan(rollout: Rollout, total) -> Plan:
    """Traffic stays where it was before the rollout; the failed version keeps no instances."""
    old = rollout.from_version
    if old is None:
        return Plan(replicas={}, weights={rollout.to_version: 100}, rollout=rollout)
    return Plan(replicas={old: total}, weights={old: 100, rollout.to_version: 0}, rollout=rollout)


def _shift_events(before: dict[int, int], after: dict[int, int], service: str) -> list[tuple[str, str, bool]]:
    def describe(weights):
        return ", ".join(f"v{n} {w} %" for n, w in sorted(weights.items()) if w)

    changed = {n: w for n, w in after.items() if before.get(n, 0) != w}
    if not changed:
        return []
    return [("ShiftedTraffic", f"Shifted traffic of {service}: {describe(before)} -> {describe(after)}", False)]
