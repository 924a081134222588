"""Monitoring of services on a Kubernetes cluster from the cluster's Prometheus (Cluster.settings
`prometheus_url`). The queries are documented in docs/kubernetes.md; they are built here, pure, per flavor:

- raw + Istio: the mesh's `istio_requests_total` / `istio_request_duration_milliseconds_bucket` by the
  version's Service (`destination_service_name="<service>-v<N>"`);
- raw + Gateway API: the same sidecar metrics when a mesh is present, else the processors' own metrics;
- knative: the queue-proxy's `revision_request_count` / `revision_request_latencies_bucket` by revision;
- everywhere: CPU and memory from cAdvisor (`container_cpu_usage_seconds_total`,
  `container_memory_working_set_bytes`) by the pods' `ferry-` names, and replicas from kube-state-metrics;
- LLM engines (vllm, sglang): their own /metrics, scraped through the pods' `prometheus.io/*` annotations
  (labelled `namespace` and `pod`): time to first token and per output token, tokens per second, requests
  waiting in the engine's queue, KV-cache use. vLLM renamed some series over releases: both names are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from .meta import dns_name

TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Query:
    name: str  # qps | latency_p95_ms | errors_per_second | cpu_cores | memory_bytes | ready_replicas | llm's
    promql: str


# Per engine: (time to first token, time per output token) histograms, generated tokens, queue, KV cache; a
# tuple lists the names a series had over releases, newest first.
_ENGINE_SERIES = {
    "vllm": {"ttft": ("vllm:time_to_first_token_seconds_bucket",),
             "tpot": ("vllm:inter_token_latency_seconds_bucket", "vllm:time_per_output_token_seconds_bucket"),
             "tokens": "vllm:generation_tokens_total", "waiting": "vllm:num_requests_waiting",
             "kv_cache": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")},
    "sglang": {"ttft": ("sglang:time_to_first_token_seconds_bucket",),
               "tpot": ("sglang:inter_token_latency_seconds_bucket", "sglang:time_per_output_token_seconds_bucket"),
               "tokens": "sglang:generation_tokens_total", "waiting": "sglang:num_queue_reqs",
               "kv_cache": ("sglang:token_usage",)},
}


def service_queries(*, service_name: str, namespace: str, version: int, flavor: str, window: str = "1m",
                    processor: str = "") -> list[Query]:
    workload = f"{dns_name(service_name)}-v{version}"
    pods = f'namespace="{namespace}",pod=~"{workload}-.*",container="server"'
    if flavor == "knative":
        selector = f'namespace_name="{namespace}",revision_name="{workload}"'
        traffic = [
            Query("qps", f"sum(rate(revision_request_count{{{selector}}}[{window}]))"),
            Query("errors_per_second",
                  f'sum(rate(revision_request_count{{{selector},response_code_class="5xx"}}[{window}]))'),
            Query("latency_p95_ms", "histogram_quantile(0.95, sum by (le) "
                                    f"(rate(revision_request_latencies_bucket{{{selector}}}[{window}])))"),
        ]
    else:
        selector = f'destination_service_namespace="{namespace}",destination_service_name="{workload}"'
        traffic = [
            Query("qps", f'sum(rate(istio_requests_total{{{selector},reporter="destination"}}[{window}]))'),
            Query("errors_per_second", f'sum(rate(istio_requests_total{{{selector},reporter="destination",'
                                       f'response_code=~"5.."}}[{window}]))'),
            Query("latency_p95_ms", "histogram_quantile(0.95, sum by (le) (rate("
                                    f'istio_request_duration_milliseconds_bucket{{{selector},reporter="destination"}}'
                                    f"[{window}])))"),
        ]
    return traffic + [
        Query("cpu_cores", f"sum(rate(container_cpu_usage_seconds_total{{{pods}}}[{window}]))"),
        Query("memory_bytes", f"sum(container_memory_working_set_bytes{{{pods}}})"),
        Query("ready_replicas", f'sum(kube_pod_status_ready{{namespace="{namespace}",pod=~"{workload}-.*",'
                                f'condition="true"}})'),
    ] + engine_queries(processor, f'namespace="{namespace}",pod=~"{workload}-.*"', window)


def engine_queries(processor: str, selector: str, window: str) -> list[Query]:
    """An LLM engine's own series for the pods `selector` names; [] for other processors."""
    series = _ENGINE_SERIES.get(processor)
    if not series:
        return []

    def p95_ms(names: tuple[str, ...]) -> str:
        rates = " or ".join(f"rate({name}{{{selector}}}[{window}])" for name in names)
        return f"1000 * histogram_quantile(0.95, sum by (le) ({rates}))"

    kv_cache = " or ".join(f"{name}{{{selector}}}" for name in series["kv_cache"])
    return [
        Query("ttft_p95_ms", p95_ms(series["ttft"])),
        Query("tpot_p95_ms", p95_ms(series["tpot"])),
        Query("tokens_per_second", f'sum(rate({series["tokens"]}{{{selector}}}[{window}]))'),
        Query("requests_waiting", f'sum({series["waiting"]}{{{selector}}})'),
        Query("kv_cache_usage", f"avg({kv_cache})"),
    ]


def query_range(prometheus_url: str, promql: str, *, start: float, end: float, step: int) -> list[tuple[float, float]]:
    """[(unix time, value)] of the first series Prometheus returns ([] when none)."""
    response = requests.get(f"{prometheus_url.rstrip('/')}/api/v1/query_range", timeout=TIMEOUT_SECONDS,
                            params={"query": promql, "start": start, "end": end, "step": step})
    response.raise_for_status()
    result = response.json().get("data", {}).get("result", [])
    return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []
