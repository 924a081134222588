"""Feeds an asynchronous service's instances from its input queue (docs/async.md), inside the gateway: one task
per async service the table lists, because the gateway already knows the instances, their slots and the balancer
(an entry is sent as an ordinary request through `Gateway.forward`: same instance choice, concurrency limits,
retries and wake-up from zero as a synchronous call).

- The dispatchers of every gateway share the input stream's consumer group (contracts/keys.py QUEUE_GROUP): an
  entry goes to one of them. A gateway's consumer name is stable across its restarts (host and port), so a
  restarted gateway first takes back what it had in hand (its pending entries), at once.
- It takes entries at the instances' pace: at most (ready instances x their concurrency) in flight, so a burst
  waits in Redis, not in the gateway or on the instances. At zero instances it takes none, and signals the
  activator while entries wait.
- An answer goes to the sink with the request's id and tags, and the entry is acknowledged and removed from the
  input, in one MULTI: a gateway killed in between leaves the entry pending, to be sent again; never lost.
- No instance reachable, or it died mid-request (502/503): the entry stays pending and is sent again after a
  pause. Entries pending with another consumer for longer than `claim_idle` (a gateway that died) are claimed.
- A full sink stops the taking (the results must have room), as a full input stops the puts.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from contracts import paths
from contracts.keys import QUEUE_GROUP, queue_key

from . import queues

logger = logging.getLogger("ferry.gateway")
RETRY_PAUSE = 0.5  # seconds before an entry that found no instance is sent again
UNLIMITED_SLOTS = 4  # entries in flight per instance when the service sets no instance concurrency
RESEND = frozenset({502, 503})


def consumer_name(port: int) -> str:
    return f"{socket.gethostname()}:{port}"


def capacity(route) -> int:
    """Entries in flight at most: the ready instances of the versions that take traffic, times their slots."""
    slots = route.concurrency or UNLIMITED_SLOTS
    return sum(len(v.instances) for v in route.versions if v.weight > 0) * slots


def sink_fields(entry: queues.Entry, status: int, body: bytes) -> tuple[bytes, dict]:
    """The result's data and tags: the request's tags, its id, and where and how it was answered."""
    tags = dict(entry.tags)
    tags.update({"requestId": entry.rid, "source.index": str(entry.index), "lastCode": str(status)})
    return body, tags


class Dispatcher:
    def __init__(self, gateway, name: str, consumer: str, claim_idle: float):
        self.gateway = gateway
        self.name = name
        self.consumer = consumer
        self.claim_idle = claim_idle
        self.in_flight: set[asyncio.Task] = set()
        self.working: set[int] = set()  # indexes in hand, so a claim does not take one twice
        self.retry: list[tuple[float, bytes, dict]] = []  # (when, id, fields) to send again
        self.last_claim = 0.0
        self.key = self.sink = ""

    def route(self):
        route = self.gateway.table.get(self.name)
        return route if route is not None and route.queue is not None else None

    async def run(self) -> None:
        redis = self.gateway.redis
        route = self.route()
        self.key = queue_key(route.cluster, self.name)
        self.sink = queue_key(route.cluster, self.name, sink=True)
        await self._ensure_group(redis)
        own_after = "0"  # first: what this consumer had in hand before a restart (None once all are taken)
        while True:
            route = self.route()
            if route is None:
                return
            room = capacity(route) - len(self.in_flight)
            if capacity(route) == 0:
                await self._wake_if_waiting(redis, route)
                await asyncio.sleep(0.2)
                continue
            if room <= 0 or await redis.xlen(self.sink) >= route.queue.sink_max_length:
                await self._pause()
                continue
            taken = self._due_retries(room)
            if not taken and own_after is not None:
                # Its own pending entries, oldest first, each once (a cursor: more may be pending than fit now).
                read = await redis.xreadgroup(QUEUE_GROUP, self.consumer, {self.key: own_after}, count=room)
                read = read[0][1] if read else []
                own_after = read[-1][0] if read else None
                taken = await self._live(redis, read)
            if not taken and time.monotonic() - self.last_claim > 1.0:
                self.last_claim = time.monotonic()
                claimed = await redis.xautoclaim(self.key, QUEUE_GROUP, self.consumer,
                                                 min_idle_time=int(self.claim_idle * 1000), count=room)
                taken = await self._live(redis, claimed[1])
            if not taken:
                read = await redis.xreadgroup(QUEUE_GROUP, self.consumer, {self.key: ">"}, count=room, block=200)
                taken = read[0][1] if read else []
            for raw_id, fields in taken:
                self._start(route, raw_id, fields)

    async def _live(self, redis, entries: list) -> list:
        """The pending entries still in the stream and not in hand; one deleted meanwhile (a client's delete or
        truncate) is acknowledged, so it is not pending for ever."""
        gone = [i for i, f in entries if not f]
        if gone:
            await redis.xack(self.key, QUEUE_GROUP, *gone)
        return [(i, f) for i, f in entries if f and queues.index_of(i) not in self.working]

    async def _ensure_group(self, redis) -> None:
        try:
            await redis.xgroup_create(self.key, QUEUE_GROUP, id="0", mkstream=True)
        except Exception as problem:  # noqa: BLE001
            if "BUSYGROUP" not in str(problem):
                raise

    async def _wake_if_waiting(self, redis, route) -> None:
        """At zero: entries waiting (new or pending) wake the service, as a request at zero does."""
        waiting = await redis.xlen(self.key) > 0  # an entry stays in the input until its result is in the sink
        if waiting and route.scale_to_zero and self.gateway.activator is not None:
            self.gateway.activator.signal(route.state, route)

    async def _pause(self) -> None:
        if self.in_flight:
            await asyncio.wait(self.in_flight, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(0.1)

    def _due_retries(self, room: int) -> list:
        now = time.monotonic()
        due = [r for r in self.retry if r[0] <= now][:room]
        for item in due:
            self.retry.remove(item)
        return [(raw_id, fields) for _, raw_id, fields in due]

    def _start(self, route, raw_id, fields: dict) -> None:
        entry = queues.Entry(raw_id, fields)
        self.working.add(entry.index)
        task = asyncio.get_running_loop().create_task(self._send(route, raw_id, fields, entry))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _send(self, route, raw_id, fields: dict, entry: queues.Entry) -> None:
        try:
            status, body = await self._call(route, entry)
            if status in RESEND:
                self.retry.append((time.monotonic() + RETRY_PAUSE, raw_id, fields))
                return
            data, tags = sink_fields(entry, status, body)
            redis = self.gateway.redis
            async with redis.pipeline(transaction=True) as pipe:
                queues.add_command(pipe, self.sink, data, tags, entry.rid, 0)  # room was checked before taking
                pipe.xack(self.key, QUEUE_GROUP, raw_id)
                pipe.xdel(self.key, raw_id)
                await pipe.execute()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 -- Redis gone for a moment: the entry stays pending, sent again
            logger.exception("queue entry %s of %s: sending again later", entry.index, self.name)
            self.retry.append((time.monotonic() + RETRY_PAUSE, raw_id, fields))
        finally:
            self.working.discard(entry.index)

    async def _call(self, route, entry: queues.Entry) -> tuple[int, bytes]:
        from .app import Request  # the gateway's own request type: same path as a client's call

        parsed = paths.parse(f"/api/predict/{self.name}", None)
        headers = [(b"content-type", b"application/octet-stream")]
        request = Request(route, parsed, None, "POST", "", headers, entry.data, b"", time.perf_counter())
        status, _headers, body = await self.gateway.forward(request, None)
        if body.__class__ is not bytes:  # a streamed answer (gateway/stream.py Relay): the sink keeps it whole
            collector = Collected()
            body.attach(collector)
            return await collector.done
        return status, body


class Collected:
    """The responder a streamed answer is relayed to (gateway/stream.py: start, piece, end or abort): its pieces
    joined; a stream that broke off reads as 502, so the entry is sent again."""

    def __init__(self):
        self.producer = None
        self.status = 0
        self.pieces: list[bytes] = []
        self.done = asyncio.get_running_loop().create_future()

    def start(self, status: int, headers) -> bool:
        self.status = status
        return True

    def piece(self, data: bytes) -> None:
        self.pieces.append(data)

    def end(self) -> None:
        if not self.done.done():
            self.done.set_result((self.status, b"".join(self.pieces)))

    def abort(self) -> None:
        if not self.done.done():
            self.done.set_result((502, b""))


async def follow(gateway, consumer: str, claim_idle: float) -> None:
    """Keeps one dispatcher running per asynchronous service the table lists."""
    running: dict[str, asyncio.Task] = {}
    resting: dict[str, float] = {}  # a dispatcher that failed: when it may start again
    while True:
        wanted = {name for name, state in gateway.table.services.items()
                  if state.route is not None and state.route.queue is not None}
        for name in wanted - set(running):
            if resting.get(name, 0) > time.monotonic():
                continue
            resting.pop(name, None)
            running[name] = asyncio.get_running_loop().create_task(
                Dispatcher(gateway, name, consumer, claim_idle).run())
        for name, task in list(running.items()):
            if task.done():
                del running[name]
                if not task.cancelled() and task.exception() is not None:
                    # Redis away, say: once a second, not at every pass
                    logger.warning("the dispatcher of %s stopped: %r; restarting it in 1 s", name, task.exception())
                    resting[name] = time.monotonic() + 1.0
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            for task in running.values():
                task.cancel()
            raise
