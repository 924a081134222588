"""The routing table in memory: the route entries the control plane publishes (contracts/routes.py), read once
per change.

A `Route` is an immutable snapshot of one service's entry; requests read `state.route` once and keep using
the snapshot they got, so a change never affects a request in flight. What must outlive a change lives in
`ServiceState`: the queue of waiting requests, per-version metrics, and the `Instance` objects (kept by
address, so their outstanding-request counts and connection pools survive a weight change).
"""

from __future__ import annotations

import hmac
import logging
from collections import deque

from contracts import sealing
from contracts.routes import RouteEntry
from .upstream import Pool

logger = logging.getLogger("ferry.gateway")


class Instance:
    __slots__ = ("name", "address", "host", "port", "host_header", "outstanding", "pool", "ejected_until",
                 "refusals", "load", "scraped_outstanding")

    def __init__(self, name: str, address: str, pool_options: dict):
        self.name = name
        self.address = address
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.host_header = address.encode()
        self.outstanding = 0
        self.pool = Pool(self.host, self.port, **pool_options)
        # Refused a connection: skipped by the balancer until then (monotonic time; 0: never was). The routing
        # table says when a crashed instance is gone or back; this covers the moments before it does.
        self.ejected_until = 0.0
        self.refusals = 0  # in a row; a connection that succeeds resets it
        # An LLM engine's own load (contracts/engine_load.EngineLoad), as gateway/engines.py last scraped it, and
        # the gateway's outstanding count at that moment: requests sent since then are not in the load yet.
        self.load = None
        self.scraped_outstanding = 0


class Version:
    __slots__ = ("number", "weight", "instances", "label", "header", "cursor")

    def __init__(self, number: int, weight: int, instances: list[Instance]):
        self.number = number
        self.weight = weight
        self.instances = instances
        self.label = str(number)
        self.header = (b"ferry-version", self.label.encode())
        self.cursor = 0  # where the next least-outstanding scan starts: ties rotate over instances


class Route:
    """One service's entry as the gateway uses it: the token opened, sizes clamped, times in seconds, versions
    linked to the `Instance` objects that outlive the route."""

    __slots__ = (
        "name", "cluster", "token", "running", "timeout", "max_queue", "concurrency", "scale_to_zero",
        "versions", "by_number", "weighted", "total_weight", "mirror_targets", "mirror_ratio", "group",
        "group_weight", "traffic_state", "generation", "state", "token_bytes", "token_digest", "failed",
        "smooth_credit", "mirror_credit", "project", "weights", "llm", "activation_timeout",
    )

    def __init__(self, entry: RouteEntry, state: ServiceState, instances: dict[str, Instance], key: bytes):
        self.name = entry.service
        self.cluster = entry.cluster
        self.project = entry.project
        # Kept in memory only: the instance is sent this token, and EAS signatures are HMACs keyed by it.
        self.token_bytes = sealing.unseal(key, entry.token_sealed, self.cluster, self.name)
        self.token_digest = bytes.fromhex(entry.token_digest)
        if not hmac.compare_digest(sealing.digest(key, self.token_bytes), self.token_digest):
            raise ValueError("token_digest does not match the sealed token")
        self.running = entry.running
        self.failed = entry.failed  # why a wake-up from zero failed: answer at once, do not hold
        self.llm = entry.llm  # an LLM engine: its load is scraped (engines.py) and routed by (llm_choice.py)
        # Seconds a request may be held while the service wakes from zero; 0: FERRY_GATEWAY_ACTIVATION_TIMEOUT.
        self.activation_timeout = max(entry.activation_timeout_ms, 0) / 1000.0
        self.timeout = max(entry.timeout_ms, 1) / 1000.0
        self.max_queue = max(entry.max_queue_size, 0)
        self.concurrency = max(entry.instance_concurrency, 0)
        self.scale_to_zero = entry.scale_to_zero
        self.versions = [
            Version(v.number, max(v.weight, 0), [instances[i.address] for i in v.instances])
            for v in entry.versions
        ]
        self.by_number = {v.number: v for v in self.versions}
        # The versions that take traffic (with cumulative weights); credits for the smooth weighted round robin.
        self.weighted: list[tuple[int, Version]] = []
        total = 0
        for version in self.versions:
            if version.weight > 0:
                total += version.weight
                self.weighted.append((total, version))
        self.total_weight = total
        self.weights = tuple(version.weight for _, version in self.weighted)
        self.smooth_credit = [0] * len(self.weighted)
        self.mirror_credit = 0.0
        mirror = entry.mirror
        self.mirror_targets = [t for t in mirror.targets if t != self.name] if mirror is not None else []
        self.mirror_ratio = min(max(float(mirror.ratio), 0.0), 100.0) / 100.0 if mirror is not None else 0.0
        self.group = entry.group
        self.group_weight = entry.group_weight
        self.traffic_state = entry.traffic_state
        self.generation = entry.generation
        self.state = state

    def ready_versions(self) -> list[Version]:
        return [v for v in self.versions if v.instances]


class ServiceState:
    """What outlives changes of one service's route."""

    __slots__ = ("name", "route", "instances", "waiters", "stats", "last_activation")

    def __init__(self, name: str):
        self.name = name
        self.route: Route | None = None
        self.instances: dict[str, Instance] = {}
        self.waiters: deque = deque()
        self.stats: dict = {}  # version number -> metrics.VersionStats
        self.last_activation = 0.0

    def wake_all(self) -> None:
        """Let every waiting request look at the table again (an instance may have become ready)."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def hand_off(self, instance) -> bool:
        """Gives a freed slot on `instance` straight to the first waiting request (its `outstanding` stays
        counted for that request), so a request arriving meanwhile cannot take it: the queue stays FIFO."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(instance)
                return True
        return False


class RouteTable:
    def __init__(self, pool_options: dict | None = None, cluster: str = "local", key: bytes = b""):
        self.services: dict[str, ServiceState] = {}
        # group name -> project -> its members: only one project's members ever make up a group.
        self.groups: dict[str, dict] = {}
        # token digest -> the routes it opens (a service's own token; the OpenAI API finds the caller's services
        # by it, as the model is named only in the body).
        self.by_token: dict[bytes, list[Route]] = {}
        self.cluster = cluster
        self.key = key
        self.loaded = False
        self.updates = 0
        self.pool_options = pool_options or {}

    def get(self, name: str) -> Route | None:
        state = self.services.get(name)
        return state.route if state is not None else None

    def state(self, name: str) -> ServiceState:
        state = self.services.get(name)
        if state is None:
            state = self.services[name] = ServiceState(name)
        return state

    def apply(self, name: str, raw: bytes | str | None) -> None:
        """Set (or, with None, remove) one service's route from its JSON entry."""
        state = self.state(name)
        try:
            entry = RouteEntry.from_json(raw) if raw is not None else None
            route = self._parse(state, entry) if entry is not None else None
        except (ValueError, KeyError, TypeError) as error:  # RouteEntryError and sealing.SealError are ValueErrors
            # Keep serving the last good route rather than failing the service on a bad entry.
            logger.error("ignored an unreadable route entry for %s: %s", name, error)
            return
        old = state.route
        state.route = route
        self.updates += 1
        self._index_token(old, route)
        same_group = old is not None and route is not None and (old.group, old.traffic_state, old.project) == (
            route.group, route.traffic_state, route.project)
        if same_group:
            self._replace_in_group(old, route)
        else:
            self._rebuild_groups()
        state.wake_all()

    def replace_all(self, entries: dict) -> None:
        """The whole table (at start, on reconnect, on the periodic resync)."""
        names = {k.decode() if isinstance(k, bytes) else k for k in entries}
        for name, raw in entries.items():
            self.apply(name.decode() if isinstance(name, bytes) else name, raw)
        for name in [n for n, s in self.services.items() if n not in names and s.route is not None]:
            self.apply(name, None)
        self.loaded = True

    def _parse(self, state: ServiceState, entry: RouteEntry) -> Route:
        if entry.service != state.name or entry.cluster != self.cluster:
            raise ValueError(f"the entry names {entry.cluster}/{entry.service}, not {self.cluster}/{state.name}")
        wanted = entry.instance_names()
        for address in [a for a in state.instances if a not in wanted]:
            state.instances.pop(address).pool.close()
        for address, instance_name in wanted.items():
            instance = state.instances.get(address)
            if instance is None:
                state.instances[address] = Instance(instance_name, address, self.pool_options)
            else:
                instance.name = instance_name
        return Route(entry, state, state.instances, self.key)

    def routes_for_token(self, digest: bytes) -> list[Route]:
        return self.by_token.get(digest, [])

    def _index_token(self, old: Route | None, new: Route | None) -> None:
        if old is not None:
            kept = [route for route in self.by_token.get(old.token_digest, ()) if route is not old]
            if kept:
                self.by_token[old.token_digest] = kept
            else:
                self.by_token.pop(old.token_digest, None)
        if new is not None:
            self.by_token.setdefault(new.token_digest, []).append(new)

    def _replace_in_group(self, old: Route, new: Route) -> None:
        members = self.groups.get(new.group, {}).get(new.project)
        if members is not None:
            self.groups[new.group][new.project] = [new if m is old else m for m in members]

    def _rebuild_groups(self) -> None:
        groups: dict[str, dict] = {}
        for state in self.services.values():
            route = state.route
            if route is not None and route.group:
                groups.setdefault(route.group, {}).setdefault(route.project, []).append(route)
        self.groups = groups
