"""Sending an admitted request to its instance, and mirroring copies."""

from __future__ import annotations

import asyncio
import logging
import time

from . import balancer
from .metrics import stats_for
from .stream import drain
from .upstream import HOP_BY_HOP, Connection, UpstreamTimeout, request_head

logger = logging.getLogger("ferry.gateway")
# Headers the gateway replaces: the instance gets its own service's token (a pool model's instance: the pool's,
# `Route.upstream_token`), whatever the client sent (a group member, a mirror target and a signed request all
# authenticate differently at the gateway).
REPLACED = HOP_BY_HOP | {b"authorization", b"x-forwarded-for"}


def build_head(method: str, target: str, instance, headers, body_len: int | None, token: bytes,
               client: bytes) -> bytes:
    """`body_len` None: the body is streamed (gateway/stream.py), sent chunked."""
    extra = b"authorization: " + token + b"\r\nx-forwarded-for: " + client + b"\r\n"
    return request_head(method, target, instance.host_header, headers, body_len, extra, REPLACED)


async def send(admission, method: str, target: str, headers, body: bytes, client: bytes):
    """(status, headers, body) from the admitted instance, or raises UpstreamError. One attempt: whether and
    where to try again is the caller's (gateway/retry.py decides, the balancer picks). A streamed answer's body
    is the Connection to relay it from (gateway/stream.py); a streamed request body is sent as it comes."""
    route = admission.route
    instance = admission.instance
    length = len(body) if body.__class__ is bytes else None
    head = build_head(method, target, instance, headers, length, route.upstream_token, client)
    connection = instance.pool.take() or await instance.pool.connect()
    return await connection.exchange(head, body, route.timeout, method == "HEAD")


class Mirror:
    """Copies of requests to other services: sent after the primary answer, never awaited, answers dropped.
    A target without a free instance right now drops the copy: a mirror must never queue or slow anything."""

    def __init__(self, table, counters):
        self.table = table
        self.counters = counters
        self.tasks: set[asyncio.Task] = set()

    def copy(self, source: str, targets, parsed, method: str, query: str, headers, body: bytes, client: bytes):
        loop = asyncio.get_running_loop()
        for name in targets:
            task = loop.create_task(self._send(source, name, parsed, method, query, headers, body, client))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, source, name, parsed, method, query, headers, body, client) -> None:
        key = (source, name)
        route = self.table.get(name)
        version = balancer.weighted_version(route) if route is not None and route.running else None
        choice = balancer.pick(route, version) if version is not None else None
        if choice is None:
            self.counters.mirror_dropped[key] = self.counters.mirror_dropped.get(key, 0) + 1
            return
        version, instance = choice
        instance.outstanding += 1
        stats = stats_for(route.state, version.number)
        stats.started()
        self.counters.mirrored[key] = self.counters.mirrored.get(key, 0) + 1
        began = time.perf_counter()
        status = 502
        try:
            path = parsed.upstream_path(name, version.model) + query
            head = build_head(method, path, instance, headers, len(body), route.upstream_token, client)
            connection = await instance.pool.acquire()
            status, _, answer = await connection.exchange(head, body, route.timeout, method == "HEAD")
            if answer.__class__ is Connection:  # a stream: read to its end, so the target does the whole work
                await drain(answer)
        except UpstreamTimeout:
            status = 504
        except Exception:  # noqa: BLE001 -- a copy's failure concerns nobody but its metrics
            status = 502
        finally:
            balancer.release(route.state, instance)
            stats.finished(status, time.perf_counter() - began)
