"""A fast stand-in instance for routing tests: one process serving several named instances on given ports.

    python tests/gateway/echo.py NAME:PORT [NAME:PORT ...]

Every request is answered 200 with JSON {"instance", "method", "path", "authorization", "body_length"}.
`?sleep=<seconds>` delays the answer; `?status=<code>` changes the status. `GET /_count` answers how many
requests each instance received since the start (the path of the last one too), and `POST /_reset` zeroes them.
Prints "ready" once every port listens.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from urllib.parse import parse_qs

import httptools

COUNTS: Counter = Counter()
PATHS: dict[str, Counter] = {}


class Echo(asyncio.Protocol):
    def __init__(self, name: str):
        self.name = name
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self):
        self.url, self.headers, self.body = b"", {}, b""

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body):
        self.body += body

    def on_message_complete(self):
        url = httptools.parse_url(self.url)
        path, query = url.path.decode(), parse_qs((url.query or b"").decode())
        method = self.parser.get_method().decode()
        keep_alive = self.parser.should_keep_alive()
        if path == "/_count":
            return self.reply(200, {"counts": dict(COUNTS), "paths": PATHS}, keep_alive)
        if path == "/_reset":
            COUNTS.clear()
            PATHS.clear()
            return self.reply(200, {}, keep_alive)
        COUNTS[self.name] += 1
        PATHS.setdefault(self.name, Counter())[path] += 1
        answer = {"instance": self.name, "method": method, "path": path, "query": url.query and url.query.decode(),
                  "authorization": self.headers.get("authorization"), "body_length": len(self.body)}
        status = int(query.get("status", ["200"])[0])
        delay = float(query.get("sleep", ["0"])[0])
        if delay:
            asyncio.get_running_loop().call_later(delay, self.reply, status, answer, keep_alive)
        else:
            self.reply(status, answer, keep_alive)

    def reply(self, status: int, answer: dict, keep_alive: bool):
        if self.transport.is_closing():
            return
        body = json.dumps(answer).encode()
        self.transport.write(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"x-instance: %s\r\n\r\n%s" % (status, len(body), self.name.encode(), body))
        if not keep_alive:
            self.transport.close()


async def main(specs: list[str]) -> None:
    loop = asyncio.get_running_loop()
    for spec in specs:
        name, _, port = spec.rpartition(":")
        await loop.create_server(lambda name=name: Echo(name), "127.0.0.1", int(port), reuse_address=True)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1:]))
