"""Which pool model is loaded on which pool instance: one pure function from what the instances hold and what the
models are asked for to the loads and unloads that close the gap. No Django, no I/O, no clock: `now` is a parameter.

The placer calls `plan_placement` on every tick and applies the actions in the order given (an eviction comes
before the load it makes room for). The rules:

1. Unserved. A key loaded somewhere but absent from `models` (a deleted service, an old version) is unloaded from
   every ready instance: "no longer served".
2. Ready instances only. Only ready instances are placed on, and a not-ready instance's models count as not loaded:
   its models are placed elsewhere as if it were gone, and nothing is asked of it (it cannot act; once ready again,
   its surplus copies fall under rule 5).
3. Wanted copies (`wanted_copies`). 0 for a model with rate 0 that no request waits for: never load what nobody
   asked for (a loaded one stays, see 5). Else ceil(rate / rate_per_copy) clamped to [1, cap], where cap is
   max_copies (0: no limit) and never more than the ready instances (one copy per instance); 0 with no ready
   instance.
4. Loads. The models short of copies go in order: waiting first, then by rate descending, then key. Each new copy
   goes to the ready instance without it that has the most free memory (ties: fewer outstanding requests, then
   name). When none has room, the plan evicts from the instance where the fewest bytes must go, least recently
   used first, and only models colder than the one placed: not waiting, and a lower rate (or any rate when the
   one placed is waiting). A model's last copy is evicted only if its rate is 0 and no request waits for it, and
   nothing this plan loaded is evicted; as a last resort, for a request waiting for a model loaded nowhere, the
   last copies of models no request waits for go too, least recently used first (as a cache does: the request
   would otherwise wait in vain while the pool is full). When even that cannot make room, or the model is bigger than every ready
   instance's budget, the model gets one `unplaceable` action whose reason says why, with the sizes in MB.
5. Surplus copies. Copies beyond the wanted count of a model unused for more than idle_seconds are unloaded (the
   extra copies of a model that cooled down), keeping at least one copy of anything loaded: only an eviction (4)
   takes a last copy. Copies beyond max_copies are unloaded whatever their use, so lowering the cap takes effect.
   The copies dropped are those on the instances with the least free memory (ties: name).
6. Memory. Loads add the model's size_bytes, unloads free the bytes the instance reported, and a copy is loaded
   only where it fits after the actions planned before it: one plan never over-fills an instance.
7. Deterministic and idempotent. Ties are broken by name and key, so the same input gives the same plan; planning
   again on the state after the actions gives no load or unload (only the same `unplaceable` reports, which
   describe a standing shortage, in the same words). To keep that true, once a model fails to place a copy, a
   colder model whose one copy is on an instance the first could use gets no extra copy (an `unplaceable` saying
   more wait): its second copy would make that one evictable, and the next plan would evict it for the model that
   failed. Other copies may go anywhere: one landing where the failed model could go takes exactly the free
   bytes it makes evictable, so that model's chances are the same on the next plan.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

LOAD = "load"
UNLOAD = "unload"
UNPLACEABLE = "unplaceable"
MB = 1024 * 1024


@dataclass(frozen=True)
class PoolInstance:
    """One model server of the pool as observed.

    budget_bytes: the memory the instance may give to models.
    loaded: model key -> resident bytes, for models loaded or loading there.
    outstanding: requests in flight now, to break ties towards the less busy instance.
    """

    name: str
    ready: bool
    budget_bytes: int
    loaded: Mapping[str, int]
    outstanding: float = 0.0

    def __post_init__(self) -> None:
        problems = [message for ok, message in [
            (bool(self.name), "name must not be empty"),
            (self.budget_bytes >= 0, f"budget_bytes must be >= 0, not {self.budget_bytes}"),
            (self.outstanding >= 0, f"outstanding must be >= 0, not {self.outstanding}"),
        ] if not ok]
        problems += [f"loaded[{key!r}] must be >= 0 bytes, not {size}" for key, size in sorted(self.loaded.items())
                     if size < 0]
        if problems:
            raise ValueError(f"PoolInstance {self.name!r}: " + "; ".join(problems))


@dataclass(frozen=True)
class ModelDemand:
    """One version of one pool model and what is asked of it.

    key: the model's name on the instances, e.g. "svc-v3".
    size_bytes: the best estimate of its resident size (measured on a previous load, else from its files).
    rate: requests per second lately.
    last_used: unix seconds of its last request; 0: never.
    waiting: a request is waiting for it now (the first request of a model not loaded anywhere).
    """

    key: str
    size_bytes: int
    rate: float
    last_used: float
    waiting: bool = False

    def __post_init__(self) -> None:
        problems = [message for ok, message in [
            (bool(self.key), "key must not be empty"),
            (self.size_bytes >= 0, f"size_bytes must be >= 0, not {self.size_bytes}"),
            (self.rate >= 0, f"rate must be >= 0, not {self.rate}"),
            (self.last_used >= 0, f"last_used must be >= 0, not {self.last_used}"),
        ] if not ok]
        if problems:
            raise ValueError(f"ModelDemand {self.key!r}: " + "; ".join(problems))


@dataclass(frozen=True)
class PlacementSettings:
    """rate_per_copy: requests/s one copy should take before another copy is wanted.
    max_copies: the most copies of one model; 0: up to every ready instance.
    idle_seconds: a copy beyond the wanted ones, unused this long, is unloaded even when memory is not short.
    """

    rate_per_copy: float = 20.0
    max_copies: int = 0
    idle_seconds: float = 300.0

    def __post_init__(self) -> None:
        problems = [message for ok, message in [
            (self.rate_per_copy > 0, f"rate_per_copy must be > 0, not {self.rate_per_copy}"),
            (self.max_copies >= 0, f"max_copies must be >= 0, not {self.max_copies}"),
            (self.idle_seconds >= 0, f"idle_seconds must be >= 0, not {self.idle_seconds}"),
        ] if not ok]
        if problems:
            raise ValueError("PlacementSettings: " + "; ".join(problems))


@dataclass(frozen=True)
class Action:
    """kind: "load", "unload" or "unplaceable"; instance: "" for unplaceable; reason: why, as a sentence for
    events and the console (e.g. "hot: 45.0 req/s wants 3 copies")."""

    kind: str
    model: str
    instance: str
    reason: str


def free_bytes(instance) -> int:
    """The budget an instance has left (negative when what it holds grew past its budget)."""
    return instance.budget_bytes - sum(instance.loaded.values())


def wanted_copies(model: ModelDemand, ready_instances: int, settings: PlacementSettings) -> int:
    """How many copies the model should have (rule 3)."""
    if model.rate <= 0 and not model.waiting:
        return 0
    cap = min(settings.max_copies or ready_instances, ready_instances)
    if cap < 1:
        return 0
    return max(1, min(cap, math.ceil(model.rate / settings.rate_per_copy)))


def plan_placement(instances: Sequence[PoolInstance], models: Sequence[ModelDemand],
                   settings: PlacementSettings, now: float) -> list[Action]:
    """The actions that bring the ready instances to what the models ask for, in the order to apply them."""
    _check_unique(instances, models)
    ready = sorted((instance for instance in instances if instance.ready), key=lambda instance: instance.name)
    plan = _Plan(ready)
    demands = {model.key: model for model in models}
    wanted = {model.key: wanted_copies(model, len(ready), settings) for model in models}
    _unload_unserved(plan, demands)
    _unload_surplus(plan, demands, wanted, settings, now)
    _load_wanted(plan, demands, wanted)
    return plan.actions


def _check_unique(instances: Sequence[PoolInstance], models: Sequence[ModelDemand]) -> None:
    for field, names in (("instances", [instance.name for instance in instances]),
                         ("models", [model.key for model in models])):
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"{field}: {', '.join(twice)} appear(s) more than once")


class _Plan:
    """The ready instances' memory as the plan goes, and the actions so far. Mutable, but only inside one call."""

    def __init__(self, ready: list[PoolInstance]) -> None:
        self.instances = {instance.name: instance for instance in ready}
        self.loaded = {instance.name: dict(instance.loaded) for instance in ready}
        # (instance, key) loaded by this plan, never evicted by it. The load order already ensures it (what was
        # loaded before is not colder); kept so that a change to the order cannot make a plan load and unload a copy.
        self.fresh: set[tuple[str, str]] = set()
        self.counts = Counter(key for loaded in self.loaded.values() for key in loaded)
        self.actions: list[Action] = []

    def names(self) -> list[str]:
        return sorted(self.loaded)

    def free(self, name: str) -> int:
        return self.instances[name].budget_bytes - sum(self.loaded[name].values())

    def holders(self, key: str) -> list[str]:
        return [name for name in self.names() if key in self.loaded[name]]

    def load(self, name: str, model: ModelDemand, reason: str) -> None:
        self.loaded[name][model.key] = model.size_bytes
        self.counts[model.key] += 1
        self.fresh.add((name, model.key))
        self.actions.append(Action(LOAD, model.key, name, reason))

    def unload(self, name: str, key: str, reason: str) -> None:
        del self.loaded[name][key]
        self.counts[key] -= 1
        self.actions.append(Action(UNLOAD, key, name, reason))

    def unplaceable(self, key: str, reason: str) -> None:
        self.actions.append(Action(UNPLACEABLE, key, "", reason))


def _unload_unserved(plan: _Plan, demands: Mapping[str, ModelDemand]) -> None:
    """Rule 1."""
    for name in plan.names():
        for key in sorted(set(plan.loaded[name]) - set(demands)):
            plan.unload(name, key, "no longer served")


def _unload_surplus(plan: _Plan, demands: Mapping[str, ModelDemand], wanted: Mapping[str, int],
                    settings: PlacementSettings, now: float) -> None:
    """Rule 5: the copies over the cap, and the extra copies of a model that cooled down."""
    for key in sorted(demands):
        holders = plan.holders(key)
        keep, reason = len(holders), ""
        if settings.max_copies and keep > settings.max_copies:
            keep, reason = settings.max_copies, f"{len(holders)} copies loaded, max_copies is {settings.max_copies}"
        idle_for = now - demands[key].last_used
        floor = max(wanted[key], 1)
        if idle_for > settings.idle_seconds and keep > floor:
            unused = "never used" if demands[key].last_used == 0 else f"unused for {idle_for:.0f} s"
            keep, reason = floor, f"{unused}: {len(holders)} copies loaded, {_copies(wanted[key])} wanted"
        # The copies go from the fullest instances first: that is where memory is likeliest to be needed.
        for name in sorted(holders, key=lambda name: (plan.free(name), name))[:len(holders) - keep]:
            plan.unload(name, key, reason)


def _load_wanted(plan: _Plan, demands: Mapping[str, ModelDemand], wanted: Mapping[str, int]) -> None:
    """Rule 4, hottest model first; rule 7's reservation for the models that could not be placed."""
    # Every model that wants copies, not only those short now: an eviction for a hotter model can leave a colder
    # one short later in this plan, and it gets its copies back here rather than on the next plan.
    asked = sorted((model for model in demands.values() if model.rate > 0 or model.waiting),
                   key=lambda model: (not model.waiting, -model.rate, model.key))
    if not plan.instances:
        # wanted_copies is 0 without a ready instance, but a model asked for should still say why it is not served.
        for model in asked:
            plan.unplaceable(model.key, "no pool instance is ready")
        return
    order = [model for model in asked if wanted[model.key] > 0]
    biggest = max(instance.budget_bytes for instance in plan.instances.values())
    failed: list[tuple[ModelDemand, set[str]]] = []  # a model that could not be placed, and where it could go
    for model in order:
        if plan.counts[model.key] >= wanted[model.key]:
            continue
        if model.size_bytes > biggest:
            plan.unplaceable(model.key, f"needs {_mb(model.size_bytes)}, more than the largest instance budget "
                                        f"({_mb(biggest)})")
            continue
        wanted_by_hotter = set().union(*(usable for hotter, usable in failed if _colder(model, hotter)))
        while plan.counts[model.key] < wanted[model.key]:
            have = plan.counts[model.key]
            reason = _load_reason(model, have, wanted[model.key])
            if _held_back(plan, model, wanted_by_hotter):
                hotter = ", ".join(sorted(hotter.key for hotter, _ in failed if _colder(model, hotter)))
                plan.unplaceable(model.key, f"{have} of {wanted[model.key]} wanted copies loaded: more wait "
                                            f"while {hotter} cannot be placed")
                break
            spot = _spot(plan, model, demands)
            if spot is None:
                plan.unplaceable(model.key, _no_room(model, have, wanted[model.key]))
                failed.append((model, set(_candidates(plan, model))))
                break
            name, victims = spot
            for key in victims:
                plan.unload(name, key, f"evicted for {model.key} ({reason}): the least recently used colder model")
            plan.load(name, model, reason)


def _held_back(plan: _Plan, model: ModelDemand, wanted_by_hotter: set[str]) -> bool:
    """Rule 7: a second copy would make the model's one copy evictable, on an instance a hotter model that could
    not be placed may use. (A copy placed there is no concern: it takes the free bytes it makes evictable.)"""
    holders = plan.holders(model.key)
    return len(holders) == 1 and holders[0] in wanted_by_hotter


def _colder(victim: ModelDemand, model: ModelDemand) -> bool:
    """Whether the victim ranks strictly below the model in the load order (waiting first, then rate): only such a
    model may be evicted for it, so two models of the same rank never push each other out plan after plan."""
    return not victim.waiting and (model.waiting or victim.rate < model.rate)


def _candidates(plan: _Plan, model: ModelDemand) -> list[str]:
    return [name for name in plan.names() if model.key not in plan.loaded[name]
            and plan.instances[name].budget_bytes >= model.size_bytes]


def _spot(plan: _Plan, model: ModelDemand, demands: Mapping[str, ModelDemand]) -> tuple[str, list[str]] | None:
    """Where the next copy goes and what must be evicted there first; None when no instance can take it."""
    candidates = _candidates(plan, model)
    roomy = [name for name in candidates if plan.free(name) >= model.size_bytes]
    if roomy:
        return min(roomy, key=lambda name: (-plan.free(name), plan.instances[name].outstanding, name)), []
    # A request waiting for a model loaded nowhere may, as a last resort, take the last copy of a model nobody
    # waits for (least recently used first), as a cache does: else it would wait in vain while the pool is full.
    for last_resort in (False, model.waiting and plan.counts[model.key] == 0):
        options = []
        for name in candidates:
            victims = _victims(plan, name, model, demands, last_resort)
            if victims is not None:
                evicted = sum(plan.loaded[name][key] for key in victims)
                options.append((evicted, plan.instances[name].outstanding, name, victims))
        if options:
            _, _, name, victims = min(options)
            return name, victims
    return None


def _victims(plan: _Plan, name: str, model: ModelDemand, demands: Mapping[str, ModelDemand],
             last_resort: bool = False) -> list[str] | None:
    """The least recently used colder models whose going makes room for the model on this instance, or None."""
    short = model.size_bytes - plan.free(name)
    evictable = sorted((key for key in plan.loaded[name]
                        if _evictable(plan, name, demands[key], model, last_resort)),
                       key=lambda key: (demands[key].last_used, key))
    victims = []
    for key in evictable:
        if short <= 0:
            break
        victims.append(key)
        short -= plan.loaded[name][key]
    return victims if short <= 0 else None


def _evictable(plan: _Plan, name: str, victim: ModelDemand, model: ModelDemand, last_resort: bool = False) -> bool:
    last_copy = plan.counts[victim.key] == 1
    return ((name, victim.key) not in plan.fresh and _colder(victim, model)
            and (not last_copy or last_resort or (victim.rate == 0 and not victim.waiting)))


def _load_reason(model: ModelDemand, have: int, wanted: int) -> str:
    if model.waiting and have == 0:
        return "a request is waiting for it"
    hot = "hot: " if wanted > 1 else ""
    return f"{hot}{model.rate:.1f} req/s wants {_copies(wanted)}"


def _no_room(model: ModelDemand, have: int, wanted: int) -> str:
    where = "no ready instance" if have == 0 else "no other ready instance"
    reason = f"{where} has {_mb(model.size_bytes)} free, even after evicting colder models"
    return f"{have} of {wanted} wanted copies loaded: {reason}" if have else reason


def _copies(count: int) -> str:
    return f"{count} cop{'y' if count == 1 else 'ies'}"


def _mb(size: int) -> str:
    """Bytes as MB for a sentence: whole MB from 100 MB up, else one decimal (a small model is not "0 MB")."""
    value = size / MB
    return f"{value:.0f} MB" if value >= 100 else f"{value:.1f} MB"
