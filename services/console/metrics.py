"""Reads the gateway's traffic aggregates from Redis for the console's charts and the service list.

The gateway writes one hash per service, version and second (TTL 1 h) and per minute (TTL 30 days), named in
contracts/keys.py:

    ferry:metrics:s:<cluster>:<service>:<version>:<unix_second>
    ferry:metrics:m:<cluster>:<service>:<version>:<unix_minute>

with fields requests, errors, status_<code>, latency_ms_sum, latency_ms_max, concurrency_max, queue_max,
cold_starts, and (when the gateway exports its histogram) latency_bucket_le_<ms> / latency_bucket_le_inf:
requests whose latency fell in (previous bound, <ms>], not cumulative, so buckets add up across keys.
Streamed answers add streams, ttfb_ms_sum and ttfb_count (the gateway: request arrival to the first body byte
relayed, i.e. time to first token as a client sees it). LLM services add the engines' token counters the
autoscaler loop samples (deployer/engine_samples.py): engine_generation_tokens, engine_prompt_tokens,
engine_tpot_ms_sum / engine_tpot_count, engine_ttft_ms_sum / engine_ttft_count.
Ranges up to an hour read the per-second hashes, longer ones the per-minute hashes.
"""

import logging
import math
import time
from dataclasses import dataclass, field

from django.conf import settings

from contracts.keys import PER_MINUTE, PER_SECOND, SECONDS_PER_RESOLUTION, metrics_key

logger = logging.getLogger("ferry.console")

RANGES = {"15m": 15 * 60, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
RANGE_LABELS = {"15m": "15 min", "1h": "1 hour", "6h": "6 hours", "24h": "24 hours", "7d": "7 days",
                "30d": "30 days"}
DEFAULT_RANGE = "1h"
MAX_POINTS = 120
PIPELINE_CHUNK = 2000
BUCKET_PREFIX = "latency_bucket_le_"
ENGINE_PREFIX = "engine_"
LIVE_WINDOW_SECONDS = 15


@dataclass
class Bucket:
    """Aggregates of one time step (several seconds or minutes added up)."""

    start: int
    requests: int = 0
    errors: int = 0
    statuses: dict = field(default_factory=dict)
    latency_sum: float = 0.0
    latency_max: float = 0.0
    concurrency_max: float = 0.0
    queue_max: float = 0.0
    cold_starts: int = 0
    histogram: dict = field(default_factory=dict)  # upper bound in ms (math.inf last) -> count
    by_version: dict = field(default_factory=dict)  # version -> requests
    streams: int = 0
    ttfb_sum: float = 0.0  # ms
    ttfb_count: int = 0
    engine: dict = field(default_factory=dict)  # engine_* field -> total over the step

    def add(self, version: int, fields: dict) -> None:
        requests = int(_number(fields.get("requests")))
        self.requests += requests
        self.by_version[version] = self.by_version.get(version, 0) + requests
        self.errors += int(_number(fields.get("errors")))
        self.latency_sum += _number(fields.get("latency_ms_sum"))
        self.latency_max = max(self.latency_max, _number(fields.get("latency_ms_max")))
        self.concurrency_max = max(self.concurrency_max, _number(fields.get("concurrency_max")))
        self.queue_max = max(self.queue_max, _number(fields.get("queue_max")))
        self.cold_starts += int(_number(fields.get("cold_starts")))
        self.streams += int(_number(fields.get("streams")))
        self.ttfb_sum += _number(fields.get("ttfb_ms_sum"))
        self.ttfb_count += int(_number(fields.get("ttfb_count")))
        for name, value in fields.items():
            if name.startswith(ENGINE_PREFIX):
                self.engine[name] = self.engine.get(name, 0.0) + _number(value)
            elif name.startswith("status_"):
                code = name.removeprefix("status_")
                self.statuses[code] = self.statuses.get(code, 0) + int(_number(value))
            elif name.startswith(BUCKET_PREFIX):
                bound = name.removeprefix(BUCKET_PREFIX)
                upper = math.inf if bound == "inf" else _number(bound)
                self.histogram[upper] = self.histogram.get(upper, 0) + int(_number(value))

    @property
    def latency_mean(self) -> float | None:
        return self.latency_sum / self.requests if self.requests else None

    @property
    def ttfb_mean(self) -> float | None:
        """Mean time to the first byte of streamed answers (ms), as the gateway saw them."""
        return self.ttfb_sum / self.ttfb_count if self.ttfb_count else None

    def engine_mean(self, name: str) -> float | None:
        """`engine_<name>_ms_sum / engine_<name>_count` (ms): "ttft" or "tpot"; None without any."""
        count = self.engine.get(f"engine_{name}_count", 0.0)
        return self.engine.get(f"engine_{name}_ms_sum", 0.0) / count if count else None

    def engine_total(self, name: str) -> float:
        return self.engine.get(f"engine_{name}", 0.0)

    def percentile(self, q: float) -> float | None:
        return histogram_quantile(q, self.histogram)


def histogram_quantile(q: float, histogram: dict) -> float | None:
    """Prometheus-style: the bucket holding the q-th request, linearly interpolated inside it."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = q * total
    seen, lower = 0, 0.0
    for upper in sorted(histogram):
        count = histogram[upper]
        if seen + count >= rank and count:
            if upper == math.inf:
                return lower  # beyond the last bound: the best we can say is "at least the last bound"
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper if upper != math.inf else lower
    return lower


def _number(value) -> float:
    if value is None:
        return 0.0
    try:
        return float(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError):
        return 0.0


@dataclass
class Window:
    start: int
    end: int
    step: int
    resolution: str  # "s" or "m"
    buckets: list[Bucket]
    error: str = ""

    @property
    def has_histogram(self) -> bool:
        return any(bucket.histogram for bucket in self.buckets)

    @property
    def total_requests(self) -> int:
        return sum(bucket.requests for bucket in self.buckets)


def plan(range_name: str, now: float | None = None) -> tuple[int, int, int, str]:
    """(start, end, step seconds, resolution) for a named range, aligned to whole steps."""
    seconds = RANGES.get(range_name, RANGES[DEFAULT_RANGE])
    resolution = PER_SECOND if seconds <= 3600 else PER_MINUTE  # the per-second hashes live an hour
    unit = SECONDS_PER_RESOLUTION[resolution]
    step = max(unit, math.ceil(seconds / MAX_POINTS / unit) * unit)
    end = (int(now if now is not None else time.time()) // step + 1) * step
    return end - seconds, end, step, resolution


def redis_client():
    if not settings.REDIS_URL:
        return None
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def _hashes(client, keys: list[str]) -> list[dict]:
    found = []
    for offset in range(0, len(keys), PIPELINE_CHUNK):
        pipe = client.pipeline(transaction=False)
        for name in keys[offset : offset + PIPELINE_CHUNK]:
            pipe.hgetall(name)
        found.extend(pipe.execute())
    return [{(k.decode() if isinstance(k, bytes) else k): v for k, v in item.items()} for item in found]


def read_window(cluster: str, service_name: str, versions: list[int], range_name: str, *,
                now: float | None = None, client=None) -> Window:
    start, end, step, resolution = plan(range_name, now)
    buckets = [Bucket(start=t) for t in range(start, end, step)]
    window = Window(start=start, end=end, step=step, resolution=resolution, buckets=buckets)
    client = client or redis_client()
    if client is None:
        window.error = "No metrics source: REDIS_URL is not set."
        return window
    unit = SECONDS_PER_RESOLUTION[resolution]  # the gateway's bucketing (contracts/keys.py)
    plan_keys = [(version, t) for version in versions for t in range(start - start % unit, end, unit)]
    try:
        hashes = _hashes(client, [metrics_key(resolution, cluster, service_name, v, t // unit) for v, t in plan_keys])
    except Exception as exc:  # noqa: BLE001 -- a Redis outage must not break the page
        logger.warning("Could not read metrics of %s: %s", service_name, exc)
        window.error = f"Metrics are unavailable: {exc}"
        return window
    for (version, t), fields in zip(plan_keys, hashes):
        if fields and start <= t < end:
            buckets[(t - start) // step].add(version, fields)
    return window


@dataclass
class Live:
    qps: float | None
    latency_mean: float | None
    latency_max: float | None
    p99: float | None


def live_summaries(services: list[tuple[str, str, list[int]]], *,
                   now: float | None = None) -> dict[tuple[str, str], Live]:
    """QPS and latency over the last few whole seconds, for many (cluster, service, versions) in one round trip;
    by (cluster, service)."""
    client = redis_client()
    if client is None or not services:
        return {}
    last = int(now if now is not None else time.time()) - 1  # the current second is still being written
    plan_keys = [((cluster, name), version, t) for cluster, name, versions in services for version in versions
                 for t in range(last - LIVE_WINDOW_SECONDS + 1, last + 1)]
    try:
        hashes = _hashes(client, [metrics_key(PER_SECOND, *name, version, t) for name, version, t in plan_keys])
    except Exception as exc:  # noqa: BLE001
        logger.warning("Could not read live metrics: %s", exc)
        return {}
    totals: dict[tuple[str, str], Bucket] = {(cluster, name): Bucket(start=0) for cluster, name, _ in services}
    for (name, version, _), fields in zip(plan_keys, hashes):
        if fields:
            totals[name].add(version, fields)
    return {
        name: Live(qps=bucket.requests / LIVE_WINDOW_SECONDS, latency_mean=bucket.latency_mean,
                   latency_max=bucket.latency_max if bucket.requests else None, p99=bucket.percentile(0.99))
        for name, bucket in totals.items()
    }
