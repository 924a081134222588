"""Reading the gateway's per-second metrics (docs/gateway.md): hashes `metrics_second_key` (contracts/keys.py)
with fields requests, errors, status_<code>, latency_ms_sum, latency_ms_max, concurrency_max, queue_max,
cold_starts."""

from dataclasses import dataclass

from contracts.keys import metrics_second_key


@dataclass(frozen=True)
class Second:
    requests: float = 0.0
    concurrency: float = 0.0  # average in-flight requests over the second (see below)
    queue: float = 0.0


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


def _summed(rows: list[dict]) -> Second:
    requests = latency_ms = queue = 0.0
    for row in rows:
        requests += float(row.get(b"requests", row.get("requests", 0)) or 0)
        latency_ms += float(row.get(b"latency_ms_sum", row.get("latency_ms_sum", 0)) or 0)
        queue = max(queue, float(row.get(b"queue_max", row.get("queue_max", 0)) or 0))
    # Little's law over one second: the summed time requests spent in flight is the average concurrency.
    return Second(requests=requests, concurrency=latency_ms / 1000.0, queue=queue)
