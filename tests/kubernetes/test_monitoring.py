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
