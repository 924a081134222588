"""Reading what the gateway measures, for the autoscaler loop.

- Its per-second metrics (docs/gateway.md): hashes `metrics_second_key` (contracts/keys.py) with fields requests,
  errors, status_<code>, latency_ms_sum, latency_ms_max, concurrency_max, queue_max, cold_starts, busy_ms_sum.
- The LLM engines' own load its scraper keeps (contracts/engine_load.py): one hash per service, field = instance
  name, value = the instance's last `EngineLoad`.
"""

from dataclasses import dataclass

from contracts.engine_load import EngineLoad, engine_load_key
from contracts.keys import metrics_second_key, queue_key


@dataclass(frozen=True)
class Second:
    requests: float = 0.0
    # The average requests in flight or held by the activator over the second (the gateway's busy_ms_sum), as
    # Knative's KPA reads concurrency: a long request counts in each second it lasts, a held one as demand.
    concurrency: float = 0.0
    queue: float = 0.0
    # The most requests in flight at once during the second, versions added up. A request still in flight
    # when a second ends is counted in the next one too, so a long stream counts in every second it is open
    # (Little's law above counts it only in the second it ends).
    in_flight: float = 0.0


def read_seconds(redis_client, cluster: str, service: str, versions: list[int], seconds: list[int]) -> dict[int, Second]:
    """Totals over the given versions, per second. A second with no hash had no traffic."""
    pipe = redis_client.pipeline(transaction=False)
    for second in seconds:
        for version in versions:
            pipe.hgetall(metrics_second_key(cluster, service, version, second))
    replies = pipe.execute()
    totals = {}
    for index, second in enumerate(seconds):
        rows = replies[index * len(versions):(index + 1) * len(versions)]
        totals[second] = _summed(rows)
    return totals


def _field(row: dict, name: str) -> float:
    return float(row.get(name.encode(), row.get(name, 0)) or 0)


def _summed(rows: list[dict]) -> Second:
    requests = busy_ms = queue = in_flight = 0.0
    for row in rows:
        requests += _field(row, "requests")
        # A gateway older than busy_ms_sum: Little's law over the second from the latencies of the requests
        # that ended in it.
        busy = "busy_ms_sum" if row.get(b"busy_ms_sum", row.get("busy_ms_sum")) is not None else "latency_ms_sum"
        busy_ms += _field(row, busy)
        queue = max(queue, _field(row, "queue_max"))
        in_flight += _field(row, "concurrency_max")
    return Second(requests=requests, concurrency=busy_ms / 1000.0, queue=queue, in_flight=in_flight)


def read_engine_loads(redis_client, cluster: str, service: str) -> dict[str, EngineLoad]:
    """Each instance's last engine reading, by instance name. A value that does not parse is left out (the
    scraper rewrites it at its next scrape)."""
    loads = {}
    for name, raw in (redis_client.hgetall(engine_load_key(cluster, service)) or {}).items():
        try:
            loads[name.decode() if isinstance(name, bytes) else name] = EngineLoad.from_json(raw)
        except (ValueError, TypeError):
            continue
    return loads


def read_queue_backlog(redis_client, cluster: str, service: str) -> int:
    """An asynchronous service's `queue[backlog]` (docs/async.md): the entries in its input queue, waiting or
    being worked on (an entry leaves the input when its result is in the sink)."""
    return int(redis_client.xlen(queue_key(cluster, service)) or 0)
