"""Asynchronous services (EAS's queue service, docs/async.md): `"metadata": {"type": "Async"}` and the `queue`
settings Ferry implements, checked field by field; the others are refused by name, with the reason.

    "queue": {"source": {"max_length": 10000, "max_payload_size_kb": 8192}, "sink": {"max_length": 10000}}

The queues are Redis streams the gateway serves (no instances of their own), so the settings that size a queue
service's own instances are refused, as are the ones whose behaviour Ferry does not have.
"""

from collections.abc import Iterator

from contracts.routes import RouteQueue

from .errors import FieldError

ASYNC = "Async"
# setting -> (lowest value, what it sets)
SETTINGS = {
    "queue.source.max_length": (1, "entries the input queue holds; a put beyond is refused with 429"),
    "queue.source.max_payload_size_kb": (1, "the largest request body a put may carry, in KB (413 beyond)"),
    "queue.sink.max_length": (1, "results the sink holds; when full, no more input is taken until some are read"),
}
OWN_INSTANCES = ("the queues live in Ferry's Redis and are served by the gateway: they have no instances of "
                 "their own to size; remove it")
REFUSED = {
    "queue.cpu": OWN_INSTANCES, "queue.memory": OWN_INSTANCES, "queue.gpu": OWN_INSTANCES,
    "queue.resource": OWN_INSTANCES, "queue.min_replica": OWN_INSTANCES, "queue.max_replica": OWN_INSTANCES,
    "queue.replica": OWN_INSTANCES, "queue.instance": OWN_INSTANCES,
    "queue.max_delivery": "Ferry delivers an entry again until an instance answers it, without a limit on the "
                          "number of deliveries; remove it",
    "queue.sink.max_payload_size_kb": "results are not limited in size (an instance's answer is kept whole); "
                                      "remove it",
    "queue.sink.auto_evict": "a full sink holds the input back instead of evicting results; remove it",
    "queue.source.auto_evict": "a full input queue refuses puts (429) instead of evicting requests; remove it",
}


def is_async(doc: dict) -> bool:
    metadata = doc.get("metadata")
    return isinstance(metadata, dict) and metadata.get("type") == ASYNC


def check_async(doc: dict) -> Iterator[FieldError]:
    queue = doc.get("queue")
    if not is_async(doc):
        if queue is not None:
            yield FieldError("queue", f'applies only to asynchronous services (metadata.type "{ASYNC}")')
        return
    metadata = doc["metadata"]
    if metadata.get("pool"):
        yield FieldError("metadata.pool", "a model in a pool is served synchronously by its pool; an asynchronous "
                                          "service has instances of its own")
    if queue is None:
        return
    if not isinstance(queue, dict):
        yield FieldError("queue", "must be an object (source, sink)")
        return
    for path, value in _leaves(queue, "queue"):
        if path in SETTINGS:
            lowest = SETTINGS[path][0]
            if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
                yield FieldError(path, f"must be a whole number >= {lowest}, not {value!r}")
        elif path in REFUSED:
            yield FieldError(path, f"is not accepted: {REFUSED[path]}")
        else:
            known = ", ".join(SETTINGS)
            yield FieldError(path, f"is not a queue setting Ferry knows (it takes {known})")


def _leaves(value: dict, prefix: str):
    for name, inner in value.items():
        path = f"{prefix}.{name}"
        if isinstance(inner, dict) and path in ("queue.source", "queue.sink"):
            yield from _leaves(inner, path)
        else:
            yield path, inner


def route_queue(spec: dict) -> RouteQueue | None:
    """What the route entry tells the gateway (contracts/routes.py): None for a synchronous service."""
    if not is_async(spec):
        return None
    queue = spec.get("queue") or {}
    source, sink = queue.get("source") or {}, queue.get("sink") or {}
    default = RouteQueue()
    return RouteQueue(
        max_length=int(source.get("max_length") or default.max_length),
        max_payload_bytes=int(source.get("max_payload_size_kb") or 0) * 1024 or default.max_payload_bytes,
        sink_max_length=int(sink.get("max_length") or default.sink_max_length))
