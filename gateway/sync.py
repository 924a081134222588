"""Keeping the in-memory routing table equal to Redis (the keys are in contracts/keys.py, the entries in contracts/routes.py).

The gateway serves one cluster (FERRY_GATEWAY_CLUSTER, `local` by default) and reads only that cluster's keys:
subscribe to its changes channel first, then load its whole routes hash, so no
change published in between is missed. A message names one service (reload that field) or is "*" (reload everything). The whole
hash is also reloaded every `resync_interval` seconds, in case a message was lost. If Redis goes away, the
gateway keeps serving the table it has and reconnects with a capped backoff.

Static stability: a Redis that restarted comes back empty (or with an old dump), and replacing the table with
that would stop every service the control plane has not republished yet. The control plane marks a complete
publish with the run id of the Redis it wrote to (`complete_key`); a whole-hash load replaces the
table only when that mark names the Redis being read (or when the gateway has no table yet). Until then the
table is kept, and per-service notifications, which are always fresh publishes, still apply.
"""

from __future__ import annotations

import asyncio
import logging

from contracts.keys import changed_channel, complete_key, routes_key

logger = logging.getLogger("ferry.gateway")


def hash_is_authoritative(mark: bytes | str | None, run_id: str, have_routes: bool) -> bool:
    """Whether a whole-hash load may replace the table (drop the services it lacks)."""
    if not have_routes:
        return True  # nothing to protect: what Redis holds is the best there is
    if isinstance(mark, bytes):
        mark = mark.decode()
    return mark == run_id


async def load_all(redis, table) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(routes_key(table.cluster))
        pipe.get(complete_key(table.cluster))
        entries, mark = await pipe.execute()
    run_id = (await redis.info("server"))["run_id"]
    have_routes = any(state.route is not None for state in table.services.values())
    if hash_is_authoritative(mark, run_id, have_routes):
        table.replace_all(entries)
    else:
        logger.warning("Redis has no complete routing table (restarted?): keeping the %s routes in memory "
                       "until the control plane republishes", sum(1 for s in table.services.values() if s.route))
        table.loaded = True


async def reload_one(redis, table, name: str) -> None:
    if name == "*":
        await load_all(redis, table)
    else:
        table.apply(name, await redis.hget(routes_key(table.cluster), name))


async def follow_forever(redis, table, resync_interval: float, ready: asyncio.Event | None = None) -> None:
    backoff = 0.1
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(changed_channel(table.cluster))
            await load_all(redis, table)
            if ready is not None:
                ready.set()
            backoff = 0.1
            logger.info("routing table loaded: %d services", sum(1 for s in table.services.values() if s.route))
            await _listen(redis, pubsub, table, resync_interval)
        except asyncio.CancelledError:
            # Stopping: no goodbye to Redis (closing a subscription mid-read can wait on its lock forever).
            raise
        except Exception as error:  # noqa: BLE001 -- keep serving the table we have; reconnect
            logger.warning("routing table updates interrupted (%s); retrying in %.1f s", error, backoff)
            await _close_quietly(pubsub)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


async def _close_quietly(pubsub) -> None:
    try:
        await asyncio.wait_for(pubsub.aclose(), 1)
    except Exception:  # noqa: BLE001 -- the connection is being replaced anyway
        pass


async def _listen(redis, pubsub, table, resync_interval: float) -> None:
    loop = asyncio.get_running_loop()
    next_resync = loop.time() + resync_interval
    task = asyncio.current_task()
    while True:
        timeout = min(max(next_resync - loop.time(), 0.0), 1.0)
        message = await pubsub.get_message(timeout=timeout)
        if task.cancelling():  # redis-py may swallow a cancellation that lands inside get_message
            raise asyncio.CancelledError
        if message is not None and message.get("type") == "message":
            data = message["data"]
            await reload_one(redis, table, data.decode() if isinstance(data, bytes) else data)
        if loop.time() >= next_resync:
            await load_all(redis, table)
            next_resync = loop.time() + resync_interval
