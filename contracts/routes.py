"""A route entry: everything the gateway needs to serve one service, as the control plane publishes it.

The control plane builds a `RouteEntry` (deployer/routing.py) and writes `to_json()` into its cluster's routes
hash (the keys: contracts/keys.py); the gateway reads it back with `RouteEntry.from_json` (gateway/table.py).
One class for both sides, so a field cannot be written under one name and read under another.

The JSON is an object with these fields (and their reading when absent, as a gateway has always read them):

    service, cluster              required: the entry must name the service and cluster it is stored under
    project                       the owning project's id; groups are partitioned by it (None)
    token_digest, token_sealed    required: the service token, keyed digest and sealed (contracts/sealing.py)
    running                       false for a stopped or deleted service (true)
    timeout_ms                    how long a request may wait for an instance (5000)
    max_queue_size                requests that may wait per service (0)
    instance_concurrency          requests per instance at once, 0: unlimited (0)
    scale_to_zero                 the autoscaler's minimum is 0 (false)
    versions                      [{number, weight, instances: [{name, address: "host:port"}], model}], oldest
                                  first; `model`: the name the instances serve this version under (a pool
                                  model's key `<service>-v<number>`), "" for the service's own name ("")
    mirror                        {targets: [service names], ratio: percent} or null
    group, group_weight           the service group it serves in ("") and its weight there (100)
    traffic_state                 standalone, grouped, ... (standalone)
    generation                    the service generation the entry was built from (None)
    failed                        why a wake-up from zero failed for this generation ("")
    llm                           an LLM engine serves it (processors/codes.py LLM_PROCESSORS): the gateway
                                  scrapes its instances' load and routes by it, with prefix affinity (false)
    activation_timeout_ms         how long a request may be held while the service wakes from zero; 0: the
                                  gateway's own setting, FERRY_GATEWAY_ACTIVATION_TIMEOUT (0)
    pool                          the pool service whose instances serve this pool model (the model mesh): its
                                  versions list, as instances, the pool instances where each is loaded; ""
                                  for an ordinary service ("")
    upstream_token_sealed         the token the gateway presents to the instances (a pool model's: the pool's),
                                  sealed as token_sealed is (bound to this entry's cluster and service name);
                                  "" sends the entry's own token (""). Clients still present the entry's own.
    queue                         an asynchronous service (metadata.type "Async", docs/async.md): {max_length,
                                  max_payload_bytes, sink_max_length}; the gateway serves the EAS queue
                                  operations at its paths and feeds its instances from the queue; absent for
                                  a synchronous service (null)

What the gateway makes of odd values (negative sizes, a ratio over 100) is the gateway's reading: these
values carry what was published, converted to their types only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


class RouteEntryError(ValueError):
    """An entry that is not JSON of the shape above; the message names the field."""


@dataclass(frozen=True)
class RouteInstance:
    """A ready instance of a version. `name` is what the gateway reports; an entry without one uses the address."""

    name: str
    address: str  # host:port


@dataclass(frozen=True)
class RouteVersion:
    number: int
    weight: int  # the traffic share applied now (percent); 0: takes no traffic unless pinned
    instances: tuple[RouteInstance, ...] = ()
    model: str = ""  # the name the instances serve this version under ("": the service's); pool models' key


@dataclass(frozen=True)
class RouteMirror:
    targets: tuple[str, ...]
    ratio: float  # percent of the requests copied to every target


@dataclass(frozen=True)
class RouteQueue:
    """An asynchronous service's queues: entries the input and the sink hold at most (a put beyond is refused
    with 429, EAS's back-pressure), and the largest body a put may carry."""

    max_length: int = 10000
    max_payload_bytes: int = 8 * 1024 * 1024
    sink_max_length: int = 10000


@dataclass(frozen=True)
class RouteEntry:
    service: str
    cluster: str
    token_digest: str
    token_sealed: str
    project: int | None = None
    running: bool = True
    timeout_ms: int = 5000
    max_queue_size: int = 0
    instance_concurrency: int = 0
    scale_to_zero: bool = False
    versions: tuple[RouteVersion, ...] = ()
    mirror: RouteMirror | None = None
    group: str = ""
    group_weight: int = 100
    traffic_state: str = "standalone"
    generation: int | None = None
    failed: str = ""
    llm: bool = False
    activation_timeout_ms: int = 0
    pool: str = ""
    upstream_token_sealed: str = ""
    queue: RouteQueue | None = None

    def instance_names(self) -> dict[str, str]:
        """address -> name of the instances of every version."""
        return {i.address: i.name for v in self.versions for i in v.instances}

    def to_dict(self) -> dict:
        """The JSON object, fields in the order the control plane has always written them."""
        return {
            "service": self.service,
            "cluster": self.cluster,
            "project": self.project,
            "token_digest": self.token_digest,
            "token_sealed": self.token_sealed,
            "running": self.running,
            "timeout_ms": self.timeout_ms,
            "max_queue_size": self.max_queue_size,
            "instance_concurrency": self.instance_concurrency,
            "scale_to_zero": self.scale_to_zero,
            # A version's `model` only when it has one (a pool model's): other entries read as they always did.
            "versions": [{"number": v.number, "weight": v.weight,
                          "instances": [{"name": i.name, "address": i.address} for i in v.instances],
                          **({"model": v.model} if v.model else {})}
                         for v in self.versions],
            "mirror": (None if self.mirror is None
                       else {"targets": list(self.mirror.targets), "ratio": self.mirror.ratio}),
            "group": self.group,
            "group_weight": self.group_weight,
            "traffic_state": self.traffic_state,
            "generation": self.generation,
            "failed": self.failed,
            "llm": self.llm,
            "activation_timeout_ms": self.activation_timeout_ms,
            "pool": self.pool,
            "upstream_token_sealed": self.upstream_token_sealed,
            # Only for an asynchronous service: other entries read as they always did.
            **({} if self.queue is None else {"queue": {
                "max_length": self.queue.max_length, "max_payload_bytes": self.queue.max_payload_bytes,
                "sink_max_length": self.queue.sink_max_length}}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> RouteEntry:
        """Raises RouteEntryError naming the field when `raw` is not a readable entry."""
        try:
            entry = json.loads(raw)
        except ValueError as error:
            raise RouteEntryError(f"the route entry is not JSON: {error}") from None
        if not isinstance(entry, dict):
            raise RouteEntryError("the route entry must be a JSON object")
        return cls.from_dict(entry)

    @classmethod
    def from_dict(cls, entry: dict) -> RouteEntry:
        return cls(
            service=_text(entry, "service"),
            cluster=_text(entry, "cluster"),
            token_digest=_text(entry, "token_digest"),
            token_sealed=_text(entry, "token_sealed"),
            project=entry.get("project"),
            running=bool(entry.get("running", True)),
            timeout_ms=_int(entry, "timeout_ms", 5000),
            max_queue_size=_int(entry, "max_queue_size", 0),
            instance_concurrency=_int(entry, "instance_concurrency", 0),
            scale_to_zero=bool(entry.get("scale_to_zero")),
            versions=tuple(_version(v, index) for index, v in enumerate(_list(entry, "versions"))),
            mirror=_mirror(entry.get("mirror")),
            group=entry.get("group") or "",
            group_weight=_int(entry, "group_weight", 100, zero_is_unset=False),
            traffic_state=entry.get("traffic_state") or "standalone",
            generation=entry.get("generation"),
            failed=entry.get("failed") or "",
            llm=_bool(entry, "llm"),
            activation_timeout_ms=_int(entry, "activation_timeout_ms", 0),
            pool=_optional_text(entry, "pool"),
            upstream_token_sealed=_optional_text(entry, "upstream_token_sealed"),
            queue=_queue(entry.get("queue")),
        )


def _text(entry: dict, name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise RouteEntryError(f"{name} is missing from the route entry (or is not a string)")
    return value


def _optional_text(entry: dict, name: str, where: str = "") -> str:
    """An absent or null field reads as ""; anything but a string is refused."""
    value = entry.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RouteEntryError(f"{where}{name} must be a string, not {value!r}")
    return value


def _bool(entry: dict, name: str) -> bool:
    value = entry.get(name, False)
    if not isinstance(value, bool):
        raise RouteEntryError(f"{name} must be true or false, not {value!r}")
    return value


def _int(entry: dict, name: str, default: int, zero_is_unset: bool = True) -> int:
    """An absent or null field reads as `default`; so does 0 (and "") unless `zero_is_unset` is False."""
    value = entry.get(name)
    unset = not value if zero_is_unset else value is None
    try:
        return default if unset else int(value)
    except (TypeError, ValueError):
        raise RouteEntryError(f"{name} must be a whole number, not {value!r}") from None


def _list(entry: dict, name: str) -> list:
    value = entry.get(name) or []
    if not isinstance(value, list):
        raise RouteEntryError(f"{name} must be a list")
    return value


def _version(version, index: int) -> RouteVersion:
    if not isinstance(version, dict) or "number" not in version:
        raise RouteEntryError(f"versions[{index}] must be an object with a number")
    instances = []
    for position, instance in enumerate(_list(version, "instances")):
        address = instance.get("address") if isinstance(instance, dict) else None
        if not isinstance(address, str) or not address:
            raise RouteEntryError(f"versions[{index}].instances[{position}].address is missing")
        instances.append(RouteInstance(name=instance.get("name") or address, address=address))
    return RouteVersion(number=_int(version, "number", 0), weight=_int(version, "weight", 0),
                        instances=tuple(instances), model=_optional_text(version, "model", f"versions[{index}]."))


def _mirror(mirror) -> RouteMirror | None:
    if not mirror:
        return None
    if not isinstance(mirror, dict):
        raise RouteEntryError("mirror must be an object with targets and ratio")
    try:
        ratio = float(mirror.get("ratio") or 0)
    except (TypeError, ValueError):
        raise RouteEntryError(f"mirror.ratio must be a number, not {mirror.get('ratio')!r}") from None
    ratio = int(ratio) if ratio.is_integer() else ratio  # 50 stays 50 on the wire
    return RouteMirror(targets=tuple(str(t) for t in _list(mirror, "targets")), ratio=ratio)


def _queue(queue) -> RouteQueue | None:
    if queue is None:
        return None
    if not isinstance(queue, dict):
        raise RouteEntryError("queue must be an object with max_length, max_payload_bytes and sink_max_length")
    default = RouteQueue()
    return RouteQueue(max_length=_int(queue, "max_length", default.max_length),
                      max_payload_bytes=_int(queue, "max_payload_bytes", default.max_payload_bytes),
                      sink_max_length=_int(queue, "sink_max_length", default.sink_max_length))
