"""Choosing where a request goes, and making it wait when nothing can take it yet.

- Version: a smooth weighted round robin (nginx's) among versions with weight > 0, or the pinned one: a 20 %
  canary gets exactly 20 of every 100 requests, spread evenly, whatever the load. If that version has
  no ready instance but another version has (a rolling update hands traffic to a version before its instances
  are ready; the old ones keep serving until then), the request goes to a ready version instead of waiting.
- Instance: least outstanding requests among the version's ready instances, under the per-instance
  concurrency limit; ties go to the instance after the last one chosen, so idle instances share the load.
  An LLM service's request (it comes with an affinity key, possibly empty) goes by the engines' own load with
  prefix affinity instead (llm_choice.py), among the same instances.
- Ejected instances (they refused a connection: gateway/retry.py) are skipped until their ejection ends or
  the table drops them (a pool's instance, shared by its models, is ejected for all of them); when every
  listed instance is ejected, the request waits as at zero (the activator's deadline), for the crashed
  instance's restart, without asking the activator (the service is not at zero).
- Waiting: when every instance is at its limit, or there is no ready instance at all (scaled to zero, or still
  starting: the activator case), the request joins the service's bounded FIFO queue until a slot is handed
  to it (a finishing request gives its slot to the first waiter, so newcomers cannot overtake the queue) or
  the table changes, with a deadline (at zero: the route's activation deadline, else the gateway's). A full
  queue or a passed deadline is `Unavailable` (503, Retry-After).
"""

from __future__ import annotations

import asyncio
import time

from contracts.weighted_round_robin import next_choice

from . import llm_choice, retry
from .table import Instance, Route, ServiceState, Version


class Unavailable(Exception):
    """No instance could take the request: the caller answers `status` with Retry-After."""

    def __init__(self, message: str, status: int = 503, retry_after: int = 1, version: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.version = version  # the version the request was counted on, if one was chosen


def weighted_version(route: Route) -> Version | None:
    """The version a request belongs to, by weight; without weights, the newest version.

    The smooth weighted round robin (contracts/weighted_round_robin.py): 80 / 20 goes 1, 1, 2, 1, 1, 1, 1, 2, ...
    The credits start again when the route changes (a new Route)."""
    if route.total_weight:
        weighted = route.weighted
        if len(weighted) == 1:
            return weighted[0][1]
        return weighted[next_choice(route.smooth_credit, route.weights, route.total_weight)][1]
    return route.versions[-1] if route.versions else None


def mirrored(route: Route) -> bool:
    """Whether this request is copied to the mirror targets: exactly `ratio` of the requests, evenly spread."""
    if not route.mirror_targets or route.mirror_ratio <= 0:
        return False
    route.mirror_credit += route.mirror_ratio
    if route.mirror_credit >= 1.0:
        route.mirror_credit -= 1.0
        return True
    return False


_monotonic = time.monotonic


def ejected(instance: Instance) -> bool:
    # The clock is read only for an instance that was ever ejected: the common case costs one attribute load.
    return instance.ejected_until != 0.0 and instance.ejected_until > _monotonic()


def eject(state: ServiceState, instance: Instance) -> float:
    """Leaves `instance` out for a while after it refused a connection; its idle connections go (they were to
    the process that is gone). Waiting requests look again when the ejection ends. Returns its length."""
    now = _monotonic()
    if instance.ejected_until > now:
        # Connections opened before the first refusal fail together: one refusal, not several in a row.
        return instance.ejected_until - now
    instance.refusals += 1
    seconds = retry.ejection_seconds(instance.refusals)
    instance.ejected_until = now + seconds
    instance.pool.drain()
    asyncio.get_running_loop().call_later(seconds, _ejection_over, state, instance)
    return seconds


def _ejection_over(state: ServiceState, instance: Instance) -> None:
    state.wake_all()
    if instance.shared is not None:  # a pool's instance: every model listing it may use it again
        instance.shared.wake_claimants(instance, but=state)


def reachable(route: Route) -> bool:
    """Whether some listed instance is not ejected (else a request waits for the table or an ejection's end)."""
    return any(not ejected(instance) for version in route.versions for instance in version.instances)


def least_outstanding(version: Version, limit: int) -> Instance | None:
    instances = version.instances
    count = len(instances)
    if count == 1:
        instance = instances[0]
        return instance if (not limit or instance.outstanding < limit) and not ejected(instance) else None
    start = version.cursor = (version.cursor + 1) % count if count else 0
    best = None
    for offset in range(count):
        instance = instances[(start + offset) % count]
        load = instance.outstanding
        if (not limit or load < limit) and (best is None or load < best.outstanding) and not ejected(instance):
            best = instance
    return best


def by_engine_load(version: Version, limit: int, key: bytes) -> Instance | None:
    """An LLM service's instance: among those with room, by the engines' load with prefix affinity."""
    instances = version.instances
    candidates = [i for i in instances if (not limit or i.outstanding < limit) and not ejected(i)]
    if not candidates:
        return None
    version.cursor = (version.cursor + 1) % len(instances)
    return llm_choice.choose(candidates, key, version.cursor)


def instance_in(version: Version, limit: int, key: bytes | None) -> Instance | None:
    """`key` None: the least-outstanding fast path; else (an LLM request's affinity key) by engine load."""
    return least_outstanding(version, limit) if key is None else by_engine_load(version, limit, key)


def activation_deadline(route: Route, default: float) -> float:
    """Seconds a request may wait for a service at zero (or every instance crashed) to get a ready instance:
    the route's own (an LLM engine takes minutes to start) or the gateway's `default`, at least the timeout."""
    return max(route.activation_timeout or default, route.timeout)


def pick(route: Route, version: Version, key: bytes | None = None) -> tuple[Version, Instance] | None:
    """An instance with room in `version`, else in another weighted version that has one (or, when no weighted
    version has a ready instance, in any ready version): weights bend only while the chosen one cannot serve."""
    limit = route.concurrency
    # Inline rather than instance_in(): this is every request's path, the LLM choice the exception.
    instance = least_outstanding(version, limit) if key is None else by_engine_load(version, limit, key)
    if instance is not None:
        return version, instance
    any_version = not any(v.instances for _, v in route.weighted)
    for other in route.versions:
        if other is not version and other.instances and (other.weight or any_version):
            instance = instance_in(other, limit, key)
            if instance is not None:
                return other, instance
    return None


class Admission:
    """The outcome of `admit`: where to send the request, and whether it had to wait for an instance."""

    __slots__ = ("route", "version", "instance", "cold")

    def __init__(self, route: Route, version: Version, instance: Instance, cold: bool):
        self.route = route
        self.version = version
        self.instance = instance
        self.cold = cold


def try_admit(route: Route, pinned: int | None, key: bytes | None = None) -> Admission | None:
    """The fast path: a slot right now, or None (then `admit` waits). Raises Unavailable for a bad version.
    `key`: an LLM request's prompt-prefix key (llm_choice.prefix_key), None for every other request."""
    version = _version_for(route, pinned)
    choice = pick_for(route, version, pinned, key)
    return _reserve(route, *choice, cold=False) if choice is not None else None


async def admit(state: ServiceState, route: Route, pinned: int | None, *, on_wait, activation_timeout: float,
                stats_for, deadline: float | None = None, key: bytes | None = None) -> Admission:
    """Reserves a slot on an instance (its `outstanding` is incremented); `release()` gives it back.

    `on_wait(route, version, cold)` is called once when the request starts waiting (the activator signals a
    scale-up there). `stats_for(version_number)` gives the metrics object the queue length is counted on.
    `deadline` (loop time): a retried request keeps the one its first failure set, and signals nothing.
    `activation_timeout`: the gateway's wait for a service at zero, unless the route has its own.
    """
    version = _version_for(route, pinned)
    loop = asyncio.get_running_loop()
    cold = False
    while True:
        if not route.running:
            raise Unavailable(f"service {route.name} is stopped", version=version.number)
        if route.failed and not any(v.instances for v in route.versions):
            raise Unavailable(f"service {route.name} could not be woken from zero: {route.failed}",
                              version=version.number, retry_after=0)
        if len(state.waiters) >= route.max_queue:
            raise Unavailable(f"the queue of service {route.name} is full ({route.max_queue} requests waiting)",
                              version=version.number)
        if deadline is None:
            cold = not any(v.instances for v in route.versions) or (pinned is not None and not version.instances)
            on_wait(route, version, cold)
            long_wait = cold or not reachable(route)  # at zero, or every instance crashed: wait for a start
            deadline = loop.time() + (activation_deadline(route, activation_timeout) if long_wait else route.timeout)
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise _deadline_passed(route, version, cold)
        handed = await _wait(state, loop, remaining, stats_for(version.number))
        route = state.route
        if route is None:
            if handed is not None:
                handed.outstanding -= 1
            raise Unavailable("the service was removed while the request waited", status=404, retry_after=0)
        if handed is not None:
            owner = _version_of(route, handed)
            if owner is not None and (pinned is None or owner.number == pinned):
                return Admission(route, owner, handed, cold)
            release(state, handed)  # not usable here: pass it on
        version = route.by_number.get(version.number) or _version_for(route, pinned)
        choice = pick_for(route, version, pinned, key)
        if choice is not None:
            return _reserve(route, *choice, cold=cold)
        if loop.time() >= deadline:
            raise _deadline_passed(route, version, cold)


def _version_of(route: Route, instance: Instance) -> Version | None:
    for version in route.versions:
        if instance in version.instances:
            return version
    return None


def _version_for(route: Route, pinned: int | None) -> Version:
    if pinned is not None:
        version = route.by_number.get(pinned)
        if version is None:
            raise Unavailable(f"service {route.name} has no version {pinned}", status=404, retry_after=0)
        return version
    version = weighted_version(route)
    if version is None:
        raise Unavailable(f"service {route.name} has no version yet")
    return version


def pick_for(route: Route, version: Version, pinned: int | None, key: bytes | None = None):
    if pinned is not None:  # a per-version request never goes to another version
        instance = instance_in(version, route.concurrency, key)
        return (version, instance) if instance is not None else None
    return pick(route, version, key)


def _reserve(route: Route, version: Version, instance: Instance, cold: bool) -> Admission:
    instance.outstanding += 1
    return Admission(route, version, instance, cold)


def release(state: ServiceState, instance: Instance) -> None:
    """Gives a slot back: to the first waiting request if any (still listed instances only), else free. A pool's
    instance (shared by its models: gateway/table.py) also wakes the other models' waiting requests, which
    look at it again (no hand-off across services: their versions may not list it)."""
    if state.waiters and state.instances.get(instance.address) is instance and not ejected(instance) \
            and state.hand_off(instance):
        return
    instance.outstanding -= 1
    if instance.shared is not None:
        instance.shared.wake_claimants(instance, but=state)


async def _wait(state: ServiceState, loop, timeout: float, stats) -> Instance | None:
    """Until a slot is handed over (the instance), the table changes or the timeout passes (None)."""
    waiter = loop.create_future()
    state.waiters.append(waiter)
    stats.enqueued()
    timer = loop.call_later(timeout, _expire, waiter)
    try:
        return await waiter
    finally:
        stats.dequeued()
        timer.cancel()
        if not waiter.done():
            waiter.cancel()
        try:
            state.waiters.remove(waiter)
        except ValueError:
            pass


def _expire(waiter) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _deadline_passed(route: Route, version: Version, cold: bool) -> Unavailable:
    if cold:
        return Unavailable(f"service {route.name} version {version.number} has no ready instance yet "
                           "(starting from zero); retry shortly", retry_after=2, version=version.number)
    if not reachable(route):
        return Unavailable(f"service {route.name} has no reachable instance: every one refused connections and "
                           "none was restarted in time", retry_after=2, version=version.number)
    return Unavailable(f"service {route.name} is at capacity: every instance is busy", retry_after=1,
                       version=version.number)
