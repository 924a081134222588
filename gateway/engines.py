"""Scraping the load of LLM engines: every ready instance of every LLM route (route entries with `llm`) has its
/metrics read each `engine_scrape_interval` seconds, in the background, never on the request path.

What is read (contracts/engine_load.py: the engine's waiting and running requests, KV-cache use, prefix-cache
and token counters) goes to two places:
- the table's `Instance` objects (`load`, and `scraped_outstanding`: the gateway's outstanding count at that
  moment), which the balancer routes by (llm_choice.py);
- Redis, once per round in one transaction per service: `engine_load_key(cluster, service)`, a hash of
  instance name -> `EngineLoad` JSON holding the instances that answered this round, expiring after
  `ENGINE_LOAD_TTL` s when the gateway stops writing it. The autoscaler (scaling on the waiting queue) and the
  console read it.

A scrape is a plain GET on its own short-lived connection (not the pool the requests use), bounded in time and
size. An instance that does not answer keeps its last load in memory (an engine too busy to answer is not an
idle one) and is left out of Redis for that round.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httptools

from contracts.engine_load import ENGINE_LOAD_TTL, EngineLoad, engine_load_key, parse_metrics

logger = logging.getLogger("ferry.gateway")
MAX_METRICS_BYTES = 8 * 1024 * 1024  # vLLM's text is ~100 KB; more is not an engine's metrics


def scrape_timeout(interval: float) -> float:
    """How long one scrape may take: a round never lasts much longer than twice the period, nor under 1 s."""
    return max(2 * interval, 1.0)


async def scrape_forever(redis, table, interval: float) -> None:
    timeout = scrape_timeout(interval)
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        try:
            await scrape_round(redis, table, timeout)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 -- Redis away: the loads in memory are still current
            logger.warning("could not write the engines' load to Redis: %s", error)
        await asyncio.sleep(max(interval - (loop.time() - began), 0.05))


def llm_instances(table) -> dict[str, list]:
    """service name -> its LLM route's ready instances (every version's)."""
    found = {}
    for name, state in table.services.items():
        route = state.route
        if route is not None and route.llm:
            instances = [instance for version in route.versions for instance in version.instances]
            if instances:
                found[name] = instances
    return found


async def scrape_round(redis, table, timeout: float) -> dict[str, dict[str, EngineLoad]]:
    """Scrapes every LLM instance at once, keeps what each answered on its Instance, and writes it to Redis.
    Returns service -> instance name -> load (those that answered)."""
    services = llm_instances(table)
    if not services:
        return {}
    targets = [(name, instance) for name, instances in services.items() for instance in instances]
    texts = await asyncio.gather(*(fetch_metrics(i.host, i.port, timeout) for _, i in targets))
    loads: dict[str, dict[str, EngineLoad]] = {name: {} for name in services}
    now = time.time()
    for (name, instance), text in zip(targets, texts):
        if text is None:
            continue
        load = parse_metrics(text, at=now)
        instance.load = load
        instance.scraped_outstanding = instance.outstanding
        loads[name][instance.name] = load
    if redis is not None:
        await write_loads(redis, table.cluster, loads)
    return loads


async def write_loads(redis, cluster: str, loads: dict[str, dict[str, EngineLoad]]) -> None:
    """One transaction: each service's hash holds exactly the instances that answered this round."""
    async with redis.pipeline(transaction=True) as pipe:
        for service, by_instance in loads.items():
            key = engine_load_key(cluster, service)
            pipe.delete(key)
            if by_instance:
                pipe.hset(key, mapping={name: load.to_json() for name, load in by_instance.items()})
                pipe.expire(key, ENGINE_LOAD_TTL)
        await pipe.execute()


async def fetch_metrics(host: str, port: int, timeout: float) -> str | None:
    """GET /metrics from host:port: its text, or None (refused, timed out, not 200, too large)."""
    try:
        return await asyncio.wait_for(_get(host, port), timeout)
    except (OSError, asyncio.TimeoutError, ValueError, httptools.HttpParserError):
        return None


class _Answer:
    def __init__(self):
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        self.headers_done = False
        self.framed = False  # Content-Length or chunked: else the body ends when the connection does

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_METRICS_BYTES:
            raise ValueError("metrics too large")
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


async def _get(host: str, port: int) -> str | None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
                     % (host.encode(), port))
        answer = _Answer()
        parser = httptools.HttpResponseParser(answer)
        while not answer.complete:
            data = await reader.read(65536)
            if not data:
                if not (answer.headers_done and not answer.framed):
                    return None  # cut off
                break
            parser.feed_data(data)
        if parser.get_status_code() != 200:
            return None
        return b"".join(answer.chunks).decode("utf-8", "replace")
    finally:
        writer.close()
