"""The monitoring tab's charts, from the gateway's aggregates (metrics.py) and what runs now (resources.py)."""

from processors.codes import LLM_PROCESSORS
from services import selectors
from services.models import Service

from . import metrics
from .charts import STATUS_COLORS, Series, bar_chart, line_chart
from .resources import instance_usage

PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def _points(window: metrics.Window, value) -> list:
    """(middle of the bucket, value) for each bucket."""
    return [(bucket.start + window.step / 2, value(bucket)) for bucket in window.buckets]


def traffic_series(window: metrics.Window) -> list[Series]:
    codes = sorted({code for bucket in window.buckets for code in bucket.statuses})
    step = window.step
    series = [Series(f"HTTP {code}", _points(window, lambda b, c=code: b.statuses.get(c, 0) / step),
                     STATUS_COLORS.get(code[:1], "")) for code in codes]
    if not series:
        series = [Series("all requests", _points(window, lambda b: b.requests / step))]
    return series


def latency_series(window: metrics.Window) -> list[Series]:
    if window.has_histogram:
        return [Series(label, _points(window, lambda b, q=q: b.percentile(q))) for label, q in PERCENTILES]
    return [Series("mean", _points(window, lambda b: b.latency_mean)),
            Series("max", _points(window, lambda b: b.latency_max if b.requests else None))]


def version_series(window: metrics.Window, versions: list[int]) -> list[Series]:
    return [Series(f"v{number}", _points(window, lambda b, n=number: b.by_version.get(n, 0) / window.step))
            for number in versions]


def _mean(buckets: list, total, count) -> float | None:
    """A sum over counts across the range (not a mean of the steps' means, which would weigh an idle step as a
    busy one)."""
    counted = sum(count(b) for b in buckets)
    return sum(total(b) for b in buckets) / counted if counted else None


def llm_summary(window: metrics.Window) -> dict | None:
    """The range's time to first token, time per output token and tokens per second; None without any."""
    buckets = window.buckets
    tokens = sum(b.engine_total("generation_tokens") for b in buckets)
    streams = sum(b.streams for b in buckets)
    if not tokens and not streams and not any(b.engine for b in buckets):
        return None
    busiest = max((b.engine_total("generation_tokens") / window.step for b in buckets), default=0.0)
    return {
        "ttft_gateway": _mean(buckets, lambda b: b.ttfb_sum, lambda b: b.ttfb_count),
        "ttft_engine": _mean(buckets, lambda b: b.engine.get("engine_ttft_ms_sum", 0.0),
                             lambda b: b.engine.get("engine_ttft_count", 0.0)),
        "tpot": _mean(buckets, lambda b: b.engine.get("engine_tpot_ms_sum", 0.0),
                      lambda b: b.engine.get("engine_tpot_count", 0.0)),
        "tokens": int(tokens), "streams": streams, "peak_tokens_per_second": busiest,
    }


def llm_charts(window: metrics.Window, span: dict) -> list:
    """Time to first token (as the gateway saw the streams, and as the engines measured it), time per output
    token and tokens per second (the engines' counters, deployer/engine_samples.py)."""
    step = window.step
    return [
        line_chart("Time to first token", [
            Series("at the gateway (streamed answers)", _points(window, lambda b: b.ttfb_mean)),
            Series("in the engine", _points(window, lambda b: b.engine_mean("ttft"))),
        ], unit="ms", chart_id="chart-ttft", **span),
        line_chart("Time per output token", [Series("mean", _points(window, lambda b: b.engine_mean("tpot")))],
                   unit="ms", chart_id="chart-tpot", **span),
        line_chart("Tokens per second", [
            Series("generated", _points(window, lambda b: b.engine_total("generation_tokens") / step)),
            Series("prompt", _points(window, lambda b: b.engine_total("prompt_tokens") / step)),
        ], unit="tok/s", chart_id="chart-tokens", **span),
    ]


def charts_for(service: Service, range_name: str) -> dict:
    numbers = [v.number for v in selectors.versions_of(service)]
    window = metrics.read_window(service.cluster.name, service.name, numbers, range_name)
    span = {"start": window.start, "end": window.end}
    unit_note = f"per {window.step} s step" if window.step < 60 else f"per {window.step // 60} min step"
    charts = [
        line_chart(f"Requests per second by status code ({unit_note})", traffic_series(window),
                   unit="req/s", chart_id="chart-qps", **span),
        line_chart("Latency, p50 / p90 / p99" if window.has_histogram else "Latency, mean and max",
                   latency_series(window), unit="ms", chart_id="chart-latency", **span),
        line_chart("Concurrency (peak requests in flight) and queue", [
            Series("in flight", _points(window, lambda b: b.concurrency_max)),
            Series("queued", _points(window, lambda b: b.queue_max)),
        ], chart_id="chart-concurrency", **span),
        line_chart("Requests per second by version", version_series(window, numbers), unit="req/s",
                   chart_id="chart-versions", **span),
    ]
    llm = llm_summary(window)
    if llm is not None or (service.spec or {}).get("processor") in LLM_PROCESSORS:
        charts = llm_charts(window, span) + charts
    return {
        "llm": llm,
        "is_llm": (service.spec or {}).get("processor") in LLM_PROCESSORS,
        "window": window,
        "charts": charts,
        "replica_chart": replica_chart(service),
        "usage_charts": usage_charts(service),
        "has_histogram": window.has_histogram,
        "total_requests": window.total_requests,
        "errors_total": sum(b.errors for b in window.buckets),
        "cold_starts": sum(b.cold_starts for b in window.buckets),
    }


def replica_chart(service: Service):
    instances = list(selectors.instances_of(service))
    bars = []
    for version in selectors.versions_of(service):
        mine = [i for i in instances if i.version_id == version.pk]
        if mine or version.weight:
            ready = sum(1 for i in mine if i.ready)
            bars.append((f"v{version.number} ({version.weight} %)", ready, f"{ready} ready of {len(mine)}"))
    top = max([len(instances), 1])
    return bar_chart("Replicas per version (now)", bars, maximum=top, chart_id="chart-replicas")


def usage_charts(service: Service) -> list:
    if service.cluster.kind != "local":
        return []
    usage = sorted(instance_usage(service).values(), key=lambda u: u.name)
    cpu = [(u.name, u.cpu_percent or 0, "—" if u.cpu_percent is None else f"{u.cpu_percent:.1f} % of a core")
           for u in usage]
    memory = [(u.name, u.rss_mb or 0, "—" if u.rss_mb is None else f"{u.rss_mb:.0f} MB") for u in usage]
    return [bar_chart("CPU per instance (sampled now)", cpu, maximum=max([100.0] + [v for _, v, _ in cpu]),
                      chart_id="chart-cpu"),
            bar_chart("Memory per instance (resident, sampled now)", memory, chart_id="chart-memory")]
