"""Per service and version: requests by status code, latency, concurrency, queue length, cold starts.

The request path only bumps plain integers on a `VersionStats` (no locks, no labels lookups: the gateway is
one event loop). Two readers turn them into what others read:
- `/metrics`: a prometheus-client collector builds the families when scraped.
- Redis, once a second, in one pipeline, never on the request path (the layout the autoscaler and the console
  read, documented in docs/gateway.md; the names in contracts/keys.py):
    ferry:metrics:s:<cluster>:<service>:<version>:<unix_second>      TTL 1 hour
    ferry:metrics:m:<cluster>:<service>:<version>:<unix_second // 60>  TTL 30 days
  fields requests, errors (5xx), status_<code>, latency_ms_sum, latency_ms_max, concurrency_max, queue_max,
  cold_starts, and latency_bucket_le_<ms> (requests whose latency fell in (previous bound, <ms>]; not
  cumulative, so they add up across keys; "inf" last); for streamed answers (gateway/stream.py), when there
  were some: streams (begun), ttfb_ms_sum and ttfb_count (arrival to the first body byte relayed), streams_cut
  (the client went away before the end); busy_ms_sum: the time requests spent in flight to an instance or
  held waiting for one during the second, summed (the second's average concurrency x 1000, as Knative's
  queue-proxy and activator measure it: a long request counts in every second it lasts, not all in the
  second it ends, and a request the activator holds is demand). Counters are added (HINCRBY, HINCRBYFLOAT for *_sum) and maxima
  raised (a Lua script), so several gateways may write the same keys.
Version "0" counts requests refused before a version was chosen (401, unknown version).
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, SummaryMetricFamily

from contracts.keys import metrics_minute_key, metrics_second_key

logger = logging.getLogger("ferry.gateway")
_perf = time.perf_counter

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BUCKET_FIELDS = tuple(f"latency_bucket_le_{bound * 1000:g}" for bound in BUCKETS) + ("latency_bucket_le_inf",)
SECOND_TTL = 3600
MINUTE_TTL = 30 * 86400

# KEYS: the second's key and the minute's key; ARGV: their TTLs, then field, value pairs.
_WRITE_SCRIPT = """
for k = 1, 2 do
  for i = 3, #ARGV, 2 do
    local field, value = ARGV[i], ARGV[i + 1]
    if string.sub(field, -4) == "_max" then
      local current = tonumber(redis.call("HGET", KEYS[k], field)) or -1
      if tonumber(value) > current then redis.call("HSET", KEYS[k], field, value) end
    elseif string.sub(field, -4) == "_sum" then
      redis.call("HINCRBYFLOAT", KEYS[k], field, value)
    else
      redis.call("HINCRBY", KEYS[k], field, value)
    end
  end
  redis.call("EXPIRE", KEYS[k], ARGV[k])
end
return 1
"""


class VersionStats:
    __slots__ = (
        "service", "version", "codes", "buckets", "latency_sum", "inflight", "queued", "cold_starts",
        "sec_requests", "sec_errors", "sec_codes", "sec_latency_sum", "sec_latency_max", "sec_concurrency_max",
        "sec_queue_max", "sec_cold_starts", "sec_buckets", "streams", "streams_cut", "ttfb_sum", "ttfb_count",
        "sec_streams", "sec_streams_cut", "sec_ttfb_sum", "sec_ttfb_count", "sec_busy", "busy_since",
    )

    def __init__(self, service: str, version: str):
        self.service = service
        self.version = version
        self.codes: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.inflight = 0
        self.queued = 0
        self.cold_starts = 0
        self.streams = self.streams_cut = self.ttfb_count = 0
        self.ttfb_sum = 0.0
        self.busy_since = _perf()
        self._reset_second()

    def _reset_second(self) -> None:
        self.sec_requests = 0
        self.sec_errors = 0
        self.sec_codes: dict[int, int] = {}
        self.sec_latency_sum = 0.0
        self.sec_latency_max = 0.0
        # What is still in flight or queued carries over into the next second.
        self.sec_concurrency_max = self.inflight
        self.sec_queue_max = self.queued
        self.sec_cold_starts = 0
        self.sec_buckets = [0] * (len(BUCKETS) + 1)
        self.sec_streams = self.sec_streams_cut = self.sec_ttfb_count = 0
        self.sec_ttfb_sum = 0.0
        self.sec_busy = 0.0

    def _busy_until(self, now: float) -> None:
        """Adds the time since the last change, times the requests in flight or held then, to the second's
        busy time."""
        self.sec_busy += (self.inflight + self.queued) * (now - self.busy_since)
        self.busy_since = now

    def started(self) -> None:
        self._busy_until(_perf())
        self.inflight += 1
        if self.inflight > self.sec_concurrency_max:
            self.sec_concurrency_max = self.inflight

    def given_back(self) -> None:
        """A started exchange that will be retried: no longer in flight (the retry starts again)."""
        self._busy_until(_perf())
        self.inflight -= 1

    def enqueued(self) -> None:
        self._busy_until(_perf())
        self.queued += 1
        if self.queued > self.sec_queue_max:
            self.sec_queue_max = self.queued

    def dequeued(self) -> None:
        self._busy_until(_perf())
        self.queued -= 1

    def finished(self, status: int, seconds: float, started: bool = True) -> None:
        if started:
            self._busy_until(_perf())
            self.inflight -= 1
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        bucket = bisect_left(BUCKETS, seconds)
        self.buckets[bucket] += 1
        self.sec_buckets[bucket] += 1
        self.latency_sum += seconds
        self.sec_requests += 1
        if status >= 500:
            self.sec_errors += 1
        codes = self.sec_codes
        codes[status] = codes.get(status, 0) + 1
        ms = seconds * 1000.0
        self.sec_latency_sum += ms
        if ms > self.sec_latency_max:
            self.sec_latency_max = ms

    def cold_start(self) -> None:
        self.cold_starts += 1
        self.sec_cold_starts += 1

    def stream_began(self) -> None:
        self.streams += 1
        self.sec_streams += 1

    def first_byte(self, seconds: float) -> None:
        """A streamed answer's first body byte went to the client, `seconds` after the request arrived."""
        self.ttfb_sum += seconds
        self.ttfb_count += 1
        self.sec_ttfb_sum += seconds * 1000.0
        self.sec_ttfb_count += 1

    def stream_cut(self) -> None:
        self.streams_cut += 1
        self.sec_streams_cut += 1

    def take_second(self) -> list | None:
        """The past second's fields as [field, value, ...] (None when nothing happened), and a fresh second."""
        self._busy_until(_perf())
        if not (self.sec_requests or self.sec_concurrency_max or self.sec_queue_max or self.sec_cold_starts
                or self.sec_streams or self.sec_ttfb_count):
            return None
        fields = [
            "requests", self.sec_requests, "errors", self.sec_errors,
            "latency_ms_sum", round(self.sec_latency_sum, 3), "latency_ms_max", round(self.sec_latency_max, 3),
            "concurrency_max", self.sec_concurrency_max, "queue_max", self.sec_queue_max,
            "cold_starts", self.sec_cold_starts, "busy_ms_sum", round(self.sec_busy * 1000.0, 3),
        ]
        for code, count in self.sec_codes.items():
            fields += (f"status_{code}", count)
        for name, count in zip(BUCKET_FIELDS, self.sec_buckets):
            if count:
                fields += (name, count)
        if self.sec_streams or self.sec_ttfb_count or self.sec_streams_cut:
            fields += ("streams", self.sec_streams, "ttfb_ms_sum", round(self.sec_ttfb_sum, 3),
                       "ttfb_count", self.sec_ttfb_count, "streams_cut", self.sec_streams_cut)
        self._reset_second()
        return fields


class Counters:
    """Gateway-wide counters that have no version."""

    def __init__(self):
        self.route_updates = 0
        self.retries: dict[str, int] = {}
        self.mirrored: dict[tuple[str, str], int] = {}
        self.mirror_dropped: dict[tuple[str, str], int] = {}
        self.activations: dict[str, int] = {}


def stats_for(state, number: int) -> VersionStats:
    stats = state.stats.get(number)
    if stats is None:
        stats = state.stats[number] = VersionStats(state.name, str(number))
    return stats


class Collector:
    """prometheus-client collector: reads the plain counters when /metrics is scraped."""

    def __init__(self, table, counters: Counters):
        self.table = table
        self.counters = counters

    def collect(self):
        requests = CounterMetricFamily("ferry_gateway_requests", "Requests answered, by status code",
                                       labels=["service", "version", "code"])
        latency = HistogramMetricFamily("ferry_gateway_request_duration_seconds",
                                        "Time from the request's arrival to its answer", labels=["service", "version"])
        inflight = GaugeMetricFamily("ferry_gateway_concurrency", "Requests in flight to instances",
                                     labels=["service", "version"])
        queued = GaugeMetricFamily("ferry_gateway_queue_length", "Requests waiting for an instance",
                                   labels=["service", "version"])
        cold = CounterMetricFamily("ferry_gateway_cold_starts", "Requests that waited for a service at zero",
                                   labels=["service", "version"])
        streams = CounterMetricFamily("ferry_gateway_streams", "Answers relayed piece by piece (chunked, SSE)",
                                      labels=["service", "version"])
        cut = CounterMetricFamily("ferry_gateway_streams_cut", "Streamed answers whose client went away first",
                                  labels=["service", "version"])
        ttfb = SummaryMetricFamily("ferry_gateway_stream_first_byte_seconds",
                                   "From a streamed request's arrival to its first body byte to the client",
                                   labels=["service", "version"])
        for state in list(self.table.services.values()):
            for stats in list(state.stats.values()):
                labels = [stats.service, stats.version]
                for code, count in sorted(stats.codes.items()):
                    requests.add_metric(labels + [str(code)], count)
                cumulative, total = [], 0
                for bound, count in zip((*BUCKETS, float("inf")), stats.buckets):
                    total += count
                    cumulative.append((_bound(bound), total))
                latency.add_metric(labels, cumulative, stats.latency_sum)
                inflight.add_metric(labels, stats.inflight)
                queued.add_metric(labels, stats.queued)
                cold.add_metric(labels, stats.cold_starts)
                if stats.streams:
                    streams.add_metric(labels, stats.streams)
                    cut.add_metric(labels, stats.streams_cut)
                    ttfb.add_metric(labels, stats.ttfb_count, stats.ttfb_sum)
        yield from (requests, latency, inflight, queued, cold, streams, cut, ttfb)
        yield from self._gateway_families()

    def _gateway_families(self):
        counters = self.counters
        routes = GaugeMetricFamily("ferry_gateway_routes", "Services in the routing table")
        routes.add_metric([], sum(1 for s in self.table.services.values() if s.route is not None))
        updates = CounterMetricFamily("ferry_gateway_route_updates", "Route entries applied")
        updates.add_metric([], self.table.updates)
        retries = CounterMetricFamily("ferry_gateway_upstream_retries",
                                      "Requests sent to another instance after a failed connection",
                                      labels=["service"])
        for service, count in counters.retries.items():
            retries.add_metric([service], count)
        mirrored = CounterMetricFamily("ferry_gateway_mirrored_requests", "Copies sent to mirror targets",
                                       labels=["service", "target"])
        for (service, target), count in counters.mirrored.items():
            mirrored.add_metric([service, target], count)
        dropped = CounterMetricFamily("ferry_gateway_mirror_dropped", "Copies not sent (target without room)",
                                      labels=["service", "target"])
        for (service, target), count in counters.mirror_dropped.items():
            dropped.add_metric([service, target], count)
        activations = CounterMetricFamily("ferry_gateway_activations", "Scale-ups asked of the control plane",
                                          labels=["service"])
        for service, count in counters.activations.items():
            activations.add_metric([service], count)
        yield from (routes, updates, retries, mirrored, dropped, activations)


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


async def flush_forever(redis, table) -> None:
    """Writes each past second's aggregates to Redis just after the second ends."""
    script = redis.register_script(_WRITE_SCRIPT)
    while True:
        now = time.time()
        await asyncio.sleep(1.0 - (now % 1.0) + 0.005)
        second = int(time.time()) - 1
        try:
            await flush_once(redis, script, table, second)
        except Exception as error:  # noqa: BLE001 -- a Redis outage loses metrics, never requests
            logger.warning("could not write metrics for second %d: %s", second, error)


async def flush_once(redis, script, table, second: int) -> int:
    pipe = redis.pipeline(transaction=False)
    written = 0
    for state in list(table.services.values()):
        for stats in list(state.stats.values()):
            fields = stats.take_second()
            if fields is None:
                continue
            await script(keys=[metrics_second_key(table.cluster, stats.service, stats.version, second),
                               metrics_minute_key(table.cluster, stats.service, stats.version, second)],
                         args=[SECOND_TTL, MINUTE_TTL, *fields], client=pipe)
            written += 1
    if written:
        await pipe.execute()
    return written
