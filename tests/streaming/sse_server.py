"""A streaming upstream for tests: an OpenAI-style chat completion answered token by token as server-sent events,
each token held back until the test lets it go. Run as a custom container (`python sse_server.py GATE_DIR`),
listening on $PORT.

POST /v1/chat/completions (or /v1/completions, or any path ending so) with "stream": true answers `text/event-stream`, chunked:
one `data: {chat.completion.chunk}` event per token of TOKENS, then `data: [DONE]`. Token i (from 0) is sent once
the file GATE_DIR/<i> exists, so a test sees what arrived before it releases the next one: arrival as it
happens, shown without timing anything. Token 0 goes at once. A gate not opened within HOLD_SECONDS ends the
stream. Without "stream" the whole completion is answered as JSON. Any other path: 404.
"""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TOKENS = ["Hello", " from", " a", " streaming", " engine", "."]
HOLD_SECONDS = 60


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    gate: Path

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        path = self.path.split("?")[0]
        chat = path.endswith("/v1/chat/completions")  # as the gateway hands it, or a direct EAS-style path
        if not chat and not path.endswith("/v1/completions"):
            self._send(404, "application/json", b'{"error": "not found"}')
            return
        if not request.get("stream"):
            text = "".join(TOKENS)
            choice = {"index": 0, "message": {"role": "assistant", "content": text}} if chat else {"index": 0,
                                                                                                   "text": text}
            self._send(200, "application/json", json.dumps({"object": "chat.completion", "choices": [choice]}).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, token in enumerate(TOKENS):
            if index and not self._released(index):
                break
            delta = {"index": 0, "delta": {"content": token}} if chat else {"index": 0, "text": token}
            self._chunk(b"data: " + json.dumps({"object": "chat.completion.chunk", "choices": [delta]}).encode()
                        + b"\n\n")
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _released(self, index: int) -> bool:
        deadline = time.monotonic() + HOLD_SECONDS
        while not (self.gate / str(index)).exists():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, "text/plain", b"ok")

    def log_message(self, format, *args):  # noqa: A002 -- the standard library's name
        print(self.address_string(), format % args, flush=True)


def main() -> None:
    Handler.gate = Path(sys.argv[1])
    ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()


if __name__ == "__main__":
    main()
