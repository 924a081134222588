"""A stand-in instance that streams, for the streaming tests: one process, one port, raw asyncio + httptools.

    python tests/gateway/streamer.py PORT

`/events?id=<id>&events=<n>&gap=<seconds>` answers server-sent events `data: <i>` (0 .. n-1), one every `gap`
seconds, as chunks (HTTP/1.1 chunked). Options:
- `framing=close`: no length, no chunking: the body ends when the connection closes, as HTTP/1.0 servers do;
- `die_after=<k>`: close the connection after k events, without the last chunk (an instance that died);
- `silent_after=<k>`: after k events send nothing more, the connection left open;
- `lockstep=1`: send event n+1 only once the client acknowledged event n (`GET /_ack?id=<id>&n=<n>`), or after
  30 s, logged "unacked": a relay that held events back shows as that, whatever the machine's load;
- `sizes=<a,b,...>`: instead of events, chunks of these sizes (bytes `i % 251`), without gaps;
- `bulk=<n>`: instead of events, n chunks of 64 KiB as fast as the connection takes them (waiting whenever its
  transport is paused).
`POST /upload?id=<id>` reads a body as it arrives and answers, once it is complete, JSON {"pieces": [sizes],
"total": bytes}.

What happened is logged per id, with the machine's monotonic clock: `GET /_log?id=<id>` answers
[[what, n, time], ...] where what is "sent" (event n is about to leave), "piece" (n bytes of a request body
arrived), "paused" and "resumed" (the connection's transport went over its high-water mark, and back under it;
n: the bytes of a bulk answer written by then), "finished" (the answer ended normally) or "closed" (the
connection was closed by the other side before the answer ended). Prints "ready" once it listens.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import parse_qs

import httptools

LOG: dict[str, list] = {}
ACKS: dict[tuple, asyncio.Future] = {}


def acked(stream_id: str, n: int) -> asyncio.Future:
    return ACKS.setdefault((stream_id, n), asyncio.get_running_loop().create_future())


def log(stream_id: str, what: str, n: int = 0) -> None:
    LOG.setdefault(stream_id, []).append([what, n, time.monotonic()])


class Streamer(asyncio.Protocol):
    def __init__(self):
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.task = None
        self.id = ""
        self.finished = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.written = 0  # bytes of a bulk answer written so far

    def connection_made(self, transport):
        self.transport = transport

    def pause_writing(self):
        self.writable.clear()
        log(self.id, "paused", self.written)

    def resume_writing(self):
        self.writable.set()
        log(self.id, "resumed", self.written)

    def connection_lost(self, exc):
        if self.task is not None and not self.finished:
            log(self.id, "closed")
            self.task.cancel()

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self):
        self.url, self.pieces, self.finished, self.task = b"", [], False, None

    def on_url(self, url):
        self.url += url

    def on_headers_complete(self):
        url = httptools.parse_url(self.url)
        self.path = url.path.decode()
        self.query = {k: v[0] for k, v in parse_qs((url.query or b"").decode()).items()}
        self.id = self.query.get("id", "")
        if self.path == "/upload":
            self.task = asyncio.get_running_loop().create_future()  # marks a request in progress

    def on_body(self, body):
        if self.path == "/upload":
            self.pieces.append(len(body))
            log(self.id, "piece", len(body))

    def on_message_complete(self):
        if self.path == "/_ack":
            ack = acked(self.id, int(self.query["n"]))
            if not ack.done():
                ack.set_result(None)
            return self.answer(b"{}")
        if self.path == "/_log":
            return self.answer(json.dumps(LOG.get(self.id, [])).encode())
        if self.path == "/upload":
            self.finished = True
            return self.answer(json.dumps({"pieces": self.pieces, "total": sum(self.pieces)}).encode())
        if self.path == "/events":
            self.task = asyncio.get_running_loop().create_task(self.stream(self.query))
            return None
        self.transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

    def answer(self, body: bytes):
        self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (len(body), body))

    async def stream(self, query: dict):
        close = query.get("framing") == "close"
        die_after = int(query.get("die_after", -1))
        silent_after = int(query.get("silent_after", -1))
        write = self.transport.write
        if close:
            write(b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
        else:
            write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")

        def piece(data: bytes):
            write(data if close else b"%x\r\n%s\r\n" % (len(data), data))

        if "bulk" in query:
            block = bytes(range(256)) * 256
            for _ in range(int(query["bulk"])):
                await self.writable.wait()
                piece(block)
                self.written += len(block)
        elif "sizes" in query:
            for size in map(int, query["sizes"].split(",")):
                piece(bytes(i % 251 for i in range(size)))
        else:
            for n in range(int(query.get("events", 5))):
                if n == die_after:
                    self.finished = True
                    log(self.id, "died", n)
                    self.transport.close()
                    return
                if n == silent_after:
                    await asyncio.Event().wait()
                if n and "lockstep" in query:
                    try:
                        await asyncio.wait_for(asyncio.shield(acked(self.id, n - 1)), 30)
                    except asyncio.TimeoutError:
                        log(self.id, "unacked", n - 1)
                elif n:
                    await asyncio.sleep(float(query.get("gap", 0.4)))
                log(self.id, "sent", n)  # just before it leaves
                piece(b"data: %d\n\n" % n)
        self.finished = True
        log(self.id, "finished")
        if close:
            self.transport.close()
        else:
            write(b"0\r\n\r\n")


async def main(port: int) -> None:
    await asyncio.get_running_loop().create_server(Streamer, "127.0.0.1", port, reuse_address=True)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
