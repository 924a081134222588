"""A benchmark report's numbers, pure: one row per second of the run and a summary, from the samples the runner
collects (latency in milliseconds and status code of each answered request; code 0 is a request that got no
answer: a connection error or a timeout). The shape is what DescribeBenchmarkTaskReport returns as Data, the
console charts and `ferry bench report` prints (docs/benchmarks.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not ordered:
        return 0.0
    rank = max(1, -(-int(round(fraction * 1000)) * len(ordered) // 1000))  # ceil(fraction * n)
    return ordered[min(rank, len(ordered)) - 1]


def is_error(code: int) -> bool:
    return code == 0 or code >= 400


def row(second: int, samples: Iterable[tuple[float, int]], dropped: int = 0) -> dict:
    """One second of the run: requests that finished in it, their latency percentiles, errors and codes."""
    samples = list(samples)
    latencies = sorted(latency for latency, _ in samples)
    codes = Counter(str(code) for _, code in samples)
    return {"Second": second, "Requests": len(samples), "Qps": len(samples),
            "Errors": sum(1 for _, code in samples if is_error(code)), "Dropped": dropped,
            "P50": _ms(percentile(latencies, 0.50)), "P90": _ms(percentile(latencies, 0.90)),
            "P99": _ms(percentile(latencies, 0.99)), "StatusCodes": dict(sorted(codes.items()))}


def summary(rows: list[dict], latencies: list[float], *, duration: float) -> dict:
    """The whole run: totals over the rows, and percentiles over every latency (not an average of seconds')."""
    ordered = sorted(latencies)
    codes: Counter = Counter()
    for each in rows:
        codes.update(each["StatusCodes"])
    requests = sum(each["Requests"] for each in rows)
    errors = sum(each["Errors"] for each in rows)
    return {
        "Requests": requests, "Succeeded": requests - errors, "Errors": errors,
        "Dropped": sum(each.get("Dropped", 0) for each in rows),
        "DurationSeconds": round(duration, 3), "AvgQps": round(requests / duration, 2) if duration > 0 else 0.0,
        "MaxQps": max((each["Qps"] for each in rows), default=0),
        "LatencyMs": {"Avg": _ms(sum(ordered) / len(ordered)) if ordered else 0.0,
                      "P50": _ms(percentile(ordered, 0.50)), "P90": _ms(percentile(ordered, 0.90)),
                      "P99": _ms(percentile(ordered, 0.99)), "Max": _ms(ordered[-1]) if ordered else 0.0},
        "StatusCodes": dict(sorted(codes.items())),
    }


def _ms(value: float) -> float:
    return round(value, 3)
