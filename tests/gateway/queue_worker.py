"""An instance for asynchronous-service tests: answers every POST with {"instance", "body"} (the body it got, as
text), after `<seconds>` when the body starts with `sleep:<seconds>;`, chunked (in two pieces) when it starts with
`chunked;`. `GET /_count` answers how many requests it
received. Prints "ready" once it listens.

    python tests/gateway/queue_worker.py NAME PORT
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECEIVED = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per answer, sent at once: head and body written apart meet Nagle's algorithm and the client's
    # delayed ACK, ~40 ms per answer on a keep-alive connection.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
        with LOCK:
            RECEIVED.append(body)
        if body.startswith("sleep:"):
            time.sleep(float(body[6:].partition(";")[0]))
        if body.startswith("chunked;"):
            return self.answer_chunked({"instance": sys.argv[1], "body": body})
        self.answer({"instance": sys.argv[1], "body": body})

    def answer_chunked(self, content: dict):
        data = json.dumps(content).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        half = len(data) // 2
        for piece in (data[:half], data[half:]):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self):
        with LOCK:
            self.answer({"count": len(RECEIVED), "bodies": list(RECEIVED)})

    def answer(self, content: dict):
        data = json.dumps(content).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
    print("ready", flush=True)
    server.serve_forever()
