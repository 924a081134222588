"""An instance that reports the LLM engine load a test sets: one process serving several named instances.

    python tests/gateway/engine_metrics_server.py NAME:PORT [NAME:PORT ...]

`GET /metrics` answers the Prometheus text last `PUT /_metrics` to that instance (vLLM's names: the test writes
what a loaded or idle engine reports), empty at first. Any other request is answered 200 with JSON
{"instance": NAME} and the header `x-instance: NAME`. Prints "ready" once every port listens.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

METRICS: dict[str, bytes] = {}


def handler_for(name: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's pool expects

        def log_message(self, *args):  # quiet
            pass

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def _answer(self, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.send_header("x-instance", name)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/metrics":
                return self._answer(METRICS.get(name, b""), "text/plain; version=0.0.4")
            self._answer(json.dumps({"instance": name}).encode())

        def do_PUT(self):
            body = self._body()
            if self.path == "/_metrics":
                METRICS[name] = body
            self._answer(b"{}")

        def do_POST(self):
            self._body()
            self._answer(json.dumps({"instance": name}).encode())

    return Handler


def main(specs: list[str]) -> None:
    servers = []
    for spec in specs:
        name, _, port = spec.rpartition(":")
        server = ThreadingHTTPServer(("127.0.0.1", int(port)), handler_for(name))
        server.daemon_threads = True
        servers.append(server)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
