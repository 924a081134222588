"""EAS's queue-service operations at an asynchronous service's paths (docs/async.md), as eas_prediction's
QueueClient calls them: `/api/predict/<service>` is the input queue, `/api/predict/<service>/sink` the results.

    POST   ?<tags>                                  put: the body, answered at once with the index (text) and
                                                    X-Eas-Queueservice-Request-Id; 429 when the queue is full,
                                                    413 over the payload limit
    GET    ?_attrs_=true                            attributes (JSON)
    GET    ?_search_=true&_index_=<i>               where an entry is (JSON), 404 when not in the queue
    GET    ?_index_&_length_&_timeout_&_auto_delete_&requestId&<tags>
                                                    get: DataFrameListProto of up to _length_ entries, waiting up
                                                    to _timeout_ for one; `_raw_=true`: the first entry's body
    GET    ?_watch_=true&_index_&_window_&_index_only_&_auto_commit_&<tags>, WebSocket upgrade
                                                    watch: DataFrameProto frames as entries come, at most _window_
                                                    not committed at once
    PUT    ?_indexes_=1,2                           commit: the entries are done (removed)
    DELETE ?_indexes_=1,2                           delete
    DELETE ?_index_=<i>&_trunc_=true                truncate: every entry below index i
Query parameters not starting with `_` (and not requestId) are tags.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from urllib.parse import parse_qsl

from contracts.keys import QUEUE_GROUP, queue_key

from . import queues, websocket
from .local import error

logger = logging.getLogger("ferry.gateway")
JSON = (b"content-type", b"application/json")
PROTOBUF = (b"content-type", b"application/vnd.google.protobuf")
REQUEST_ID = b"x-eas-queueservice-request-id"
WATCH_POLL = 0.05  # seconds between a watcher's reads when it has nothing to send


def split_query(query: str) -> tuple[dict, dict]:
    """(the operation's `_..._` parameters and requestId, the tags)."""
    params, tags = {}, {}
    for name, value in parse_qsl(query.lstrip("?"), keep_blank_values=True):
        (params if name.startswith("_") or name == "requestId" else tags)[name] = value
    return params, tags


def duration(text: str, field: str) -> float:
    """EAS writes timeouts as Go durations ("5s", "500ms"); a bare number is seconds."""
    text = text.strip()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix) and text[:-len(suffix)].replace(".", "", 1).isdigit():
            return float(text[:-len(suffix)]) * scale
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{field} must be a duration such as 5s or 500ms, not {text!r}") from None


def whole(params: dict, name: str, default: int) -> int:
    value = params.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None


def indexes(params: dict) -> list[int]:
    text = params.get("_indexes_", "")
    try:
        return [int(i) for i in text.split(",") if i.strip()]
    except ValueError:
        raise ValueError(f"_indexes_ must be whole numbers separated by commas, not {text!r}") from None


async def handle(gateway, request, reply) -> None:
    """Answers one queue operation (the request passed `prepare`: its credentials are the service's)."""
    try:
        answer = await operate(gateway, request, reply)
    except ValueError as problem:
        answer = error(400, str(problem))
    except Exception:  # noqa: BLE001 -- Redis gone, say: one request fails, not the gateway
        logger.exception("queue operation failed for %s", request.route.name)
        answer = error(503, "the queue is not reachable right now; retry", ((b"retry-after", b"1"),))
    if answer is not None:
        reply(*answer)


async def operate(gateway, request, reply):
    route = request.route
    suffix = request.parsed.upstream.rstrip("/")
    if suffix not in ("", "/sink"):
        return error(404, f"{route.name} is an asynchronous service: its queues are /api/predict/{route.name} "
                          f"and /api/predict/{route.name}/sink")
    sink = suffix == "/sink"
    limits = route.queue
    key = queue_key(route.cluster, route.name, sink)
    name = route.name + suffix
    max_length = limits.sink_max_length if sink else limits.max_length
    redis = gateway.redis
    params, tags = split_query(request.query)
    method = request.method
    if method == "POST":
        body = request.body if request.body.__class__ is bytes else b""
        if len(body) > limits.max_payload_bytes:
            return error(413, f"the body is larger than the queue's max payload ({limits.max_payload_bytes} bytes, "
                              "metadata.queue.max_payload_size_kb)")
        rid = params.get("requestId") or uuid.uuid4().hex
        try:
            index = await queues.add(redis, key, body, tags, rid, max_length)
        except queues.QueueFull:
            return error(429, f"the queue {name} is full ({max_length} entries, metadata.queue.max_length): "
                              "retry once entries are consumed", ((b"retry-after", b"1"),))
        return 200, [(b"content-type", b"text/plain"), (REQUEST_ID, rid.encode())], str(index).encode()
    if method == "GET" and params.get("_attrs_") == "true":
        attributes = await queues.attributes(redis, key, name, max_length, limits.max_payload_bytes)
        return 200, [JSON], json.dumps(attributes).encode()
    if method == "GET" and params.get("_search_") == "true":
        return await search(gateway, route, key, sink, whole(params, "_index_", 0))
    if method == "GET" and params.get("_watch_") == "true":
        return await watch(request, reply, redis, key, params, tags)
    if method == "GET":
        return await get(redis, key, params, tags, max_length)
    if method == "PUT":
        done = await queues.remove(redis, key, indexes(params))
        return 200, [(b"content-type", b"text/plain")], f"{done} committed".encode()
    if method == "DELETE":
        if params.get("_trunc_") == "true":
            dropped = await queues.truncate(redis, key, whole(params, "_index_", 0))
            return 200, [(b"content-type", b"text/plain")], f"{dropped} truncated".encode()
        done = await queues.remove(redis, key, indexes(params))
        return 200, [(b"content-type", b"text/plain")], f"{done} deleted".encode()
    return error(405, f"{method} is not a queue operation")


async def get(redis, key: str, params: dict, tags: dict, max_length: int):
    start = whole(params, "_index_", 0)
    length = max(whole(params, "_length_", 1), 1)
    timeout = duration(params.get("_timeout_", "0s"), "_timeout_")
    rid = params.get("requestId")
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if rid:
            found = [e for e in await queues.by_request(redis, key, rid, max_length) if e.matches(tags)]
        else:
            found = [e for e in await queues.read(redis, key, start, max_length if tags else length)
                     if e.matches(tags)]
        found = found[:length]
        if found or asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(min(0.05, max(deadline - asyncio.get_running_loop().time(), 0)))
    if params.get("_auto_delete_", "true") == "true":
        await queues.remove(redis, key, [e.index for e in found])
    if params.get("_raw_") == "true":
        return 200, [(b"content-type", b"application/octet-stream")], found[0].data if found else b""
    return 200, [PROTOBUF], queues.frame_list([queues.entry_frame(e) for e in found])


async def search(gateway, route, key: str, sink: bool, index: int):
    """EAS's answer: {"ConsumerId", "IsPending"} for an entry being worked on, {"WaitHeadQueueLength"} (entries
    ahead of it) for one waiting."""
    redis = gateway.redis
    if index <= 0 or not await redis.xrange(key, min=queues.entry_id(index), max=queues.entry_id(index)):
        return error(404, f"no entry {index} in the queue")
    if not sink:
        pending = await redis.xpending_range(key, QUEUE_GROUP, min=queues.entry_id(index),
                                             max=queues.entry_id(index), count=1)
        if pending:
            consumer = pending[0]["consumer"]
            consumer = consumer.decode() if isinstance(consumer, bytes) else consumer
            return 200, [JSON], json.dumps({"ConsumerId": consumer, "IsPending": True}).encode()
    ahead = len(await redis.xrange(key, min="-", max=f"({queues.entry_id(index)}"))
    return 200, [JSON], json.dumps({"IsPending": False, "WaitHeadQueueLength": ahead}).encode()


async def watch(request, reply, redis, key: str, params: dict, tags: dict):
    """A WebSocket of entries from _index_ on; with _auto_commit_ each is removed once sent, else at most _window_
    sent entries may be waiting for the client's commit before more are sent."""
    ws_key = next((v for n, v in request.headers if n == b"sec-websocket-key"), None)
    protocol = getattr(reply, "__self__", None)
    if ws_key is None or not hasattr(protocol, "take_over"):
        return error(400, "watch needs a WebSocket upgrade (Sec-WebSocket-Key) on the gateway's own server")
    start = whole(params, "_index_", 0)
    window = max(whole(params, "_window_", 1), 1)
    index_only = params.get("_index_only_") == "true"
    auto_commit = params.get("_auto_commit_") == "true"
    socket = websocket.WebSocket(None)
    socket.transport = protocol.take_over(socket, websocket.handshake(ws_key))
    outstanding: list[int] = []  # sent, not committed yet
    after = start - 1 if start > 0 else 0  # the last index sent (entries after it are next)
    try:
        while not socket.closed.is_set():
            if outstanding:
                alive = {e.index for e in await queues.read(redis, key, outstanding[0], len(outstanding) * 4 + 16)}
                outstanding = [i for i in outstanding if i in alive]
            room = window - len(outstanding)
            entries = await queues.read(redis, key, after + 1, room) if room > 0 else []
            for entry in entries:
                after = entry.index
                if not entry.matches(tags):
                    continue
                socket.send(queues.entry_frame(entry, index_only))
                if auto_commit:
                    await queues.remove(redis, key, [entry.index])
                else:
                    outstanding.append(entry.index)
            if not entries:
                # Nothing new, or the window is full: poll again shortly (a blocking read would hold a Redis
                # connection per watcher), or stop at once when the client leaves.
                closed = asyncio.ensure_future(socket.closed.wait())
                await asyncio.wait({closed}, timeout=WATCH_POLL)
                closed.cancel()
    finally:
        socket.close()
    return None
