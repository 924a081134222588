"""A custom server as EAS users write them: Python's http.server, HTTP/1.0, listening on $PORT.

Every request is answered with JSON {"path" (with the query), "method", "body", "authorization"} and no
Content-Length: the body ends when the server closes the connection, as HTTP/1.0 allows. Special paths:
- `/big?bytes=<n>`: a close-delimited body of n bytes (`0123456789` repeated);
- `/empty`: 204; `/unchanged`: 304 (neither has a body);
- HEAD: the headers a GET would get, with `Content-Length: 12345`, and no body.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self._answer()

    def do_POST(self):
        self._answer()

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "12345")
        self.end_headers()

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        if url.path in ("/empty", "/unchanged"):
            self.send_response(204 if url.path == "/empty" else 304)
            self.send_header("ETag", '"v1"')
            self.end_headers()
            return
        if url.path == "/big":
            size = int(parse_qs(url.query)["bytes"][0])
            content = (b"0123456789" * (size // 10 + 1))[:size]
        else:
            content = json.dumps({"path": self.path, "method": self.command, "body": body.decode(),
                                  "authorization": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format, *args):  # noqa: A002 -- the standard library's name
        print(self.address_string(), format % args, flush=True)


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
