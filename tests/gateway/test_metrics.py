"""Every request is measured: /metrics (Prometheus text) and per-second / per-minute aggregates in Redis."""

import os
import time

import redis

from .conftest import call, load

BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


def aggregates(client, pattern: str) -> dict:
    total: dict = {}
    for key in client.scan_iter(pattern):
        for field, value in client.hgetall(key).items():
            field, value = field.decode(), float(value)
            total[field] = max(total.get(field, 0), value) if field.endswith("_max") else total.get(field, 0) + value
    return total


def flushed(client, pattern: str, requests: int, field: str = "requests", timeout: float = 10.0) -> dict:
    """The aggregates once `field` counts `requests` (or what they hold after `timeout`, for the assertion)."""
    deadline = time.monotonic() + timeout
    while (total := aggregates(client, pattern)).get(field, 0) < requests and time.monotonic() < deadline:
        time.sleep(0.1)
    return total


def test_it_counts_requests_by_status_latency_and_concurrency_per_second_and_minute(gateway, routes, echo):
    backends = echo("m1")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("m1")])])
    headers = {"Authorization": f"token-of-{name}"}
    ok = load(gateway.port, f"/api/predict/{name}", requests=300, threads=3, headers=headers, body=BODY)
    failed = load(gateway.port, f"/api/predict/{name}?status=500", requests=20, threads=1, headers=headers)
    slow = load(gateway.port, f"/api/predict/{name}?sleep=0.2", requests=4, threads=4, headers=headers)
    assert sum(ok.values()) == 300 and sum(failed.values()) == 20 and sum(slow.values()) == 4
    call(gateway, f"/api/predict/{name}", body=BODY)  # a 401: counted on version 0
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    # The flush writes each second just after it ends (and the minute's with it); on a busy machine it can lag.
    seconds = flushed(client, f"ferry:metrics:s:local:{name}:1:*", requests=324)
    assert seconds["requests"] == 324 and seconds["errors"] == 20
    assert seconds["status_200"] == 304 and seconds["status_500"] == 20
    assert seconds["latency_ms_max"] >= 200 and 0 < seconds["latency_ms_sum"] / 324 < 100
    assert seconds["concurrency_max"] >= 4 and seconds["queue_max"] == 0 and seconds["cold_starts"] == 0
    buckets = {f: v for f, v in seconds.items() if f.startswith("latency_bucket_le_")}
    assert sum(buckets.values()) == 324 and buckets["latency_bucket_le_250"] >= 4  # the 0.2 s ones
    minutes = flushed(client, f"ferry:metrics:m:local:{name}:1:*", requests=324)
    assert minutes["requests"] == 324 and minutes["status_500"] == 20 and minutes["latency_ms_max"] >= 200
    assert flushed(client, f"ferry:metrics:s:local:{name}:0:*", 1, field="status_401")["status_401"] == 1

    second_key = next(client.scan_iter(f"ferry:metrics:s:local:{name}:1:*"))
    minute_key = next(client.scan_iter(f"ferry:metrics:m:local:{name}:1:*"))
    assert 3500 < client.ttl(second_key) <= 3600
    assert 29 * 86400 < client.ttl(minute_key) <= 30 * 86400
    assert abs(int(second_key.rsplit(b":", 1)[1]) - time.time()) < 30
    second_numbers = {int(k.rsplit(b":", 1)[1]) for k in client.scan_iter(f"ferry:metrics:s:local:{name}:1:*")}
    minute_numbers = {int(k.rsplit(b":", 1)[1]) for k in client.scan_iter(f"ferry:metrics:m:local:{name}:1:*")}
    assert minute_numbers == {second // 60 for second in second_numbers}  # <unix_second // 60>

    text = gateway.metrics()
    assert f'ferry_gateway_requests_total{{code="200",service="{name}",version="1"}} 304.0' in text
    assert f'ferry_gateway_requests_total{{code="500",service="{name}",version="1"}} 20.0' in text
    assert f'ferry_gateway_request_duration_seconds_count{{service="{name}",version="1"}} 324.0' in text
    assert f'ferry_gateway_concurrency{{service="{name}",version="1"}} 0.0' in text
    assert f'ferry_gateway_queue_length{{service="{name}",version="1"}} 0.0' in text
    assert "process_resident_memory_bytes" in text
