"""The gateway's per-second concurrency as Knative measures it (gateway/metrics.py busy_ms_sum, read by
deployer/metrics.py): time-weighted requests in flight or held by the activator, so a long request counts in
every second it lasts instead of all at once in the second it ends, and a request held while an instance
starts is demand the autoscaler sees (it must not scale the service back to zero under it)."""

from __future__ import annotations

import pytest

from deployer.metrics import _summed
from gateway import metrics


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(metrics, "_perf", lambda: now[0])
    return now


def fields(stats) -> dict:
    taken = stats.take_second()
    return dict(zip(taken[::2], taken[1::2])) if taken else {}


def test_a_request_longer_than_a_second_counts_in_each_second_it_lasts(clock):
    stats = metrics.VersionStats("svc", "1")
    stats.started()
    clock[0] += 1.0
    assert fields(stats)["busy_ms_sum"] == pytest.approx(1000.0)
    clock[0] += 1.0
    assert fields(stats)["busy_ms_sum"] == pytest.approx(1000.0)
    clock[0] += 0.5
    stats.finished(200, 2.5)
    clock[0] += 0.5
    second = fields(stats)
    assert second["busy_ms_sum"] == pytest.approx(500.0)
    # Little's law would have put all 2.5 s into this last second
    assert second["latency_ms_sum"] == pytest.approx(2500.0)


def test_a_held_request_is_demand_while_no_instance_takes_it(clock):
    stats = metrics.VersionStats("svc", "1")
    stats.enqueued()
    clock[0] += 1.0
    assert fields(stats)["busy_ms_sum"] == pytest.approx(1000.0)
    clock[0] += 0.25
    stats.dequeued()
    stats.started()  # handed to the woken instance
    clock[0] += 0.75
    assert fields(stats)["busy_ms_sum"] == pytest.approx(1000.0)


def test_two_overlapping_requests_average_over_the_second(clock):
    stats = metrics.VersionStats("svc", "1")
    stats.started()
    clock[0] += 0.5
    stats.started()
    clock[0] += 0.25
    stats.finished(200, 0.75)
    stats.given_back()  # the second one failed to connect and goes to a retry
    clock[0] += 0.25
    assert fields(stats)["busy_ms_sum"] == pytest.approx(750.0 + 250.0)


def test_the_autoscaler_reads_busy_time_and_older_gateways_latency():
    current = _summed([{b"requests": b"3", b"latency_ms_sum": b"9000", b"busy_ms_sum": b"1500"}])
    assert current.concurrency == pytest.approx(1.5)
    older = _summed([{b"requests": b"3", b"latency_ms_sum": b"900"}])
    assert older.concurrency == pytest.approx(0.9)
    two_gateways = _summed([{"busy_ms_sum": "1000"}, {"busy_ms_sum": "500"}])
    assert two_gateways.concurrency == pytest.approx(1.5)
