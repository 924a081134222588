"""A benchmark task's configuration and report numbers (services/benchmark_config.py, benchmark_report.py): pure."""

import base64

import pytest

from services.benchmark_config import Bounds, ConfigError, parse, plan_of, stored
from services.benchmark_report import percentile, row, summary

BOUNDS = Bounds(max_qps=500, max_seconds=600, max_concurrency=64)


def problems(config) -> dict:
    with pytest.raises(ConfigError) as error:
        plan_of(config, BOUNDS)
    return dict(error.value.problems)


def test_eas_config_becomes_a_plan_with_defaults():
    plan = plan_of({"service": {"serviceName": "iris", "requestToken": "t"},
                    "data": {"content": base64.b64encode(b'{"x": 1}').decode()}, "optional": {"maxRt": 100}}, BOUNDS)
    assert (plan.service_name, plan.duration, plan.qps, plan.concurrency) == ("iris", 60, None, 8)
    assert plan.body == b'{"x": 1}' and plan.timeout_ms == 100 and plan.method == "POST"
    assert plan_of({"service": {"serviceName": "s"}, "data": {"json": [1]}}, BOUNDS).body == b"[1]"
    assert plan_of({"service": {"serviceName": "s"}}, Bounds(5, 10, 2)).duration == 10


def test_out_of_bounds_and_unknown_settings_are_refused_by_field():
    found = problems({"service": {"serviceName": "s"}, "base": {"duration": 601, "qps": 501, "concurrency": 65,
                                                                "mode": "scan", "warmup": 1},
                      "data": {"content": "%%%"}, "http": {"method": "DELETE", "path": "/../x",
                                                           "headers": {"Authorization": "x"}},
                      "extra": {}})
    assert set(found) == {"base.duration", "base.qps", "base.concurrency", "base.mode", "base.warmup",
                          "data.content", "http.method", "http.path", "http.headers.Authorization", "extra"}
    assert "FERRY_BENCHMARK_MAX_QPS" in found["base.qps"]
    assert set(problems({"base": {"qps": 0, "duration": "1"}})) == {"service.serviceName", "base.qps",
                                                                    "base.duration"}
    with pytest.raises(ConfigError, match="body"):
        parse("not json")


def test_the_request_token_is_not_stored():
    config = {"service": {"serviceName": "s", "requestToken": "secret"}, "base": {"qps": 1}}
    assert stored(config) == {"service": {"serviceName": "s"}, "base": {"qps": 1}}
    assert config["service"]["requestToken"] == "secret"  # the caller's dict is left alone


def test_rows_and_summary():
    assert percentile([], 0.5) == 0 and percentile([1, 2, 3, 4], 0.5) == 2 and percentile([1, 2, 3, 4], 0.99) == 4
    one = row(0, [(10.0, 200), (20.0, 200), (30.0, 503), (5.0, 0)], dropped=2)
    assert (one["Requests"], one["Errors"], one["Dropped"]) == (4, 2, 2)
    assert one["StatusCodes"] == {"0": 1, "200": 2, "503": 1} and one["P50"] == 10.0 and one["P99"] == 30.0
    two = row(1, [(40.0, 200)])
    total = summary([one, two], [10.0, 20.0, 30.0, 5.0, 40.0], duration=2.0)
    assert (total["Requests"], total["Succeeded"], total["Errors"], total["AvgQps"], total["MaxQps"]) == (5, 3, 2,
                                                                                                         2.5, 4)
    assert total["LatencyMs"]["P50"] == 20.0 and total["LatencyMs"]["Max"] == 40.0
    assert total["StatusCodes"] == {"0": 1, "200": 3, "503": 1}
