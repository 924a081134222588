"""Prometheus queries per flavor, and reading a range from a Prometheus-compatible HTTP API on loopback."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from deployer.kubernetes.monitoring import query_range, service_queries


def test_raw_queries_read_the_mesh_metrics_of_the_versions_service():
    queries = {q.name: q.promql for q in service_queries(service_name="demo_iris", namespace="ferry-team-a",
                                                         version=3, flavor="raw")}
    assert queries["qps"] == ('sum(rate(istio_requests_total{destination_service_namespace="ferry-team-a",'
                              'destination_service_name="demo-iris-v3",reporter="destination"}[1m]))')
    assert 'pod=~"demo-iris-v3-.*"' in queries["cpu_cores"]


def test_knative_queries_read_the_revisions_metrics():
    queries = {q.name: q.promql for q in service_queries(service_name="demo_iris", namespace="ns", version=1,
                                                         flavor="knative")}
    assert 'revision_name="demo-iris-v1"' in queries["qps"] and "revision_request_latencies_bucket" in \
        queries["latency_p95_ms"]


def test_an_llm_engines_own_series_are_queried_for_its_pods():
    queries = {q.name: q.promql for q in service_queries(service_name="chat", namespace="ns", version=2,
                                                         flavor="knative", processor="vllm")}
    selector = 'namespace="ns",pod=~"chat-v2-.*"'
    assert queries["ttft_p95_ms"] == ("1000 * histogram_quantile(0.95, sum by (le) "
                                      f"(rate(vllm:time_to_first_token_seconds_bucket{{{selector}}}[1m])))")
    assert "vllm:inter_token_latency_seconds_bucket" in queries["tpot_p95_ms"] and \
        "vllm:time_per_output_token_seconds_bucket" in queries["tpot_p95_ms"]
    assert queries["tokens_per_second"] == f"sum(rate(vllm:generation_tokens_total{{{selector}}}[1m]))"
    assert queries["requests_waiting"] == f"sum(vllm:num_requests_waiting{{{selector}}})"
    sglang = {q.name: q.promql for q in service_queries(service_name="chat", namespace="ns", version=2,
                                                        flavor="raw", processor="sglang")}
    assert sglang["requests_waiting"] == f"sum(sglang:num_queue_reqs{{{selector}}})"
    plain = {q.name for q in service_queries(service_name="iris", namespace="ns", version=1, flavor="raw",
                                             processor="sklearn")}
    assert "ttft_p95_ms" not in plain


def test_query_range_returns_the_first_series():
    seen = []

    class Prometheus(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(parse_qs(urlparse(self.path).query))
            body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {}, "values": [[1700000000, "1.5"], [1700000015, "2"]]}]}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Prometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        points = query_range(f"http://127.0.0.1:{server.server_address[1]}", "up", start=1, end=2, step=15)
    finally:
        server.shutdown()
        server.server_close()
    assert points == [(1700000000.0, 1.5), (1700000015.0, 2.0)]
    assert seen[0]["query"] == ["up"] and seen[0]["step"] == ["15"]
