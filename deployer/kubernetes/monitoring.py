"""Monitoring of services on a Kubernetes cluster from the cluster's Prometheus (Cluster.settings
`prometheus_url`). The queries are documented in docs/kubernetes.md; they are built here, pure, per flavor:

- raw + Istio: the mesh's `istio_requests_total` / `istio_request_duration_milliseconds_bucket` by the
  version's Service (`destination_service_name="<service>-v<N>"`);
- raw + Gateway API: the same sidecar metrics when a mesh is present, else the processors' own metrics;
- knative: the queue-proxy's `revision_request_count` / `revision_request_latencies_bucket` by revision;
- everywhere: CPU and memory from cAdvisor (`container_cpu_usage_seconds_total`,
  `container_memory_working_set_bytes`) by the pods' `ferry-` names, and replicas from kube-state-metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from .meta import dns_name

TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Query:
    name: str  # qps | latency_p95_ms | errors_per_second | cpu_cores | memory_bytes | ready_replicas
    promql: str


def service_queries(*, service_name: str, namespace: str, version: int, flavor: str, window: str = "1m") -> list[Query]:
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
    ]


def query_range(prometheus_url: str, promql: str, *, start: float, end: float, step: int) -> list[tuple[float, float]]:
    """[(unix time, value)] of the first series Prometheus returns ([] when none)."""
    response = requests.get(f"{prometheus_url.rstrip('/')}/api/v1/query_range", timeout=TIMEOUT_SECONDS,
                            params={"query": promql, "start": start, "end": end, "step": step})
    response.raise_for_status()
    result = response.json().get("data", {}).get("result", [])
    return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []
