"""The routing table in memory: the route entries the control plane publishes (contracts/routes.py), read once
per change.

A `Route` is an immutable snapshot of one service's entry; requests read `state.route` once and keep using
the snapshot they got, so a change never affects a request in flight. What must outlive a change lives in
`ServiceState`: the queue of waiting requests, per-version metrics, and the `Instance` objects (kept by
address, so their outstanding-request counts and connection pools survive a weight change).

Pool models (the model mesh, docs/gateway.md): a pool model's entry names its `pool`, and its versions list as
instances the pool's instances where each version is loaded (served under the version's `model` key). The pool
and all its models must use the same `Instance` objects, so that outstanding counts, connection pools and
ejections are the pool's: a slow request of one model steers another model's requests to other instances.
The rule:
- Every `ServiceState` has a *home*, the state whose `instances` dict holds its instances: itself, or for a
  pool model the pool's state (created empty if the pool's entry is not applied yet). A pool model's state
  shares that dict (`state.instances is home.instances`).
- Each route *claims* in its home the addresses its entry lists (`home.claims`: state -> addresses). A new
  address gets an `Instance` whichever route lists it first; an instance is closed only when no route of the
  home claims it any more. So the order entries arrive in does not matter (a model before its pool), and a
  pool's entry that drops an instance a model's entry still lists keeps it until the model's next entry.
- A removed pool model gives its claims back (a removed ordinary service keeps its instances, as before); a
  model that changes pool moves its claims. A pool is not itself a pool model: such an entry is refused.
- An instance claimed by more than one route knows its home (`Instance.shared`), so a freed slot or the end
  of an ejection also wakes the other models' waiting requests (gateway/balancer.py).
The token sent to the instances is `Route.upstream_token` (the pool's, from `upstream_token_sealed`; else the
service's own); a client's credentials are checked against the service's own token only.
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
                 "refusals", "load", "scraped_outstanding", "shared")

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
        # The home ServiceState when more than one route claims this instance (a pool's), else None.
        self.shared = None


class Version:
    __slots__ = ("number", "weight", "instances", "label", "header", "cursor", "model", "body_model")

    def __init__(self, number: int, weight: int, instances: list[Instance], model: str = "", llm: bool = False):
        self.number = number
        # The name the instances serve it under ("": the service's; a pool model's key): in the path sent to
        # Ferry's model server, in the OpenAI body's `model` sent to an LLM engine (an adapter pool's, whose paths
        # name no model: docs/mesh.md).
        self.model = "" if llm else model
        self.body_model = model if llm else ""
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
        "smooth_credit", "mirror_credit", "project", "weights", "llm", "activation_timeout", "upstream_token",
        "pool", "queue",
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
        # What the instances are sent: a pool model's instances are the pool's, which check the pool's token.
        # Never accepted from a client (authorization compares token_digest and signs with token_bytes).
        self.upstream_token = (sealing.unseal(key, entry.upstream_token_sealed, self.cluster, self.name)
                               if entry.upstream_token_sealed else self.token_bytes)
        self.pool = entry.pool
        self.queue = entry.queue  # an asynchronous service's queue limits (docs/async.md), None for the others
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
            Version(v.number, max(v.weight, 0), [instances[i.address] for i in v.instances], v.model, entry.llm)
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

    __slots__ = ("name", "route", "instances", "waiters", "stats", "last_activation", "home", "claims")

    def __init__(self, name: str):
        self.name = name
        self.route: Route | None = None
        self.instances: dict[str, Instance] = {}  # a pool model's: its home's (the pool's) dict itself
        self.home: ServiceState = self  # whose `instances` this service's routes use (module docstring)
        self.claims: dict[ServiceState, frozenset[str]] = {}  # as a home: the addresses each route lists
        self.waiters: deque = deque()
        self.stats: dict = {}  # version number -> metrics.VersionStats
        self.last_activation = 0.0

    def wake_all(self) -> None:
        """Let every waiting request look at the table again (an instance may have become ready)."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def wake_claimants(self, instance: Instance, but: ServiceState | None = None) -> None:
        """As a home: wakes the waiting requests of every other route listing `instance` (a slot of it was
        freed, or its ejection ended), so a pool model's requests see what another model's did."""
        for state, addresses in self.claims.items():
            if state is not but and state.waiters and instance.address in addresses:
                state.wake_all()

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
            route = self._parse(state, entry) if entry is not None else self._removed(state)
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
        home = self._home_for(state, entry)
        # Instances are added before the route is built and claims changed only once it was: an entry refused
        # below (a token that does not open) leaves the claims as they were.
        instances = home.instances if home is not state or state.home is state else {}
        wanted = entry.instance_names()
        for address, instance_name in wanted.items():
            instance = instances.get(address)
            if instance is None:
                instances[address] = Instance(instance_name, address, self.pool_options)
            else:
                instance.name = instance_name
        route = Route(entry, state, instances, self.key)
        if state.home is not home:  # became a pool model, left its pool, or moved to another pool
            old = state.home
            old.claims.pop(state, None)
            self._collect(old)
            state.home, state.instances = home, instances
        home.claims[state] = frozenset(wanted)
        self._collect(home)
        return route

    def _home_for(self, state: ServiceState, entry: RouteEntry) -> ServiceState:
        """The state whose instances this entry's route uses: its own, or its pool's."""
        if not entry.pool:
            return state
        if entry.pool == state.name:
            raise ValueError(f"pool names the service itself ({entry.pool})")
        if any(other is not state for other in state.claims):
            raise ValueError(f"{state.name} is the pool of other services, so it cannot be a pool model itself")
        home = self.state(entry.pool)
        if home.home is not home:
            raise ValueError(f"the pool {entry.pool} is itself a pool model (of {home.home.name})")
        return home

    def _removed(self, state: ServiceState) -> None:
        """A removed pool model gives its claims back (an ordinary service keeps its instances, as always)."""
        home = state.home
        if home is not state:
            home.claims.pop(state, None)
            self._collect(home)
            state.home, state.instances = state, {}
        return None

    @staticmethod
    def _collect(home: ServiceState) -> None:
        """Closes the instances no route claims any more, and marks the shared ones (module docstring)."""
        claimed = frozenset().union(*home.claims.values())
        for address in [a for a in home.instances if a not in claimed]:
            home.instances.pop(address).pool.close()
        shared = home if len(home.claims) > 1 else None
        for instance in home.instances.values():
            instance.shared = shared

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
