#!/usr/bin/env python3
"""The gateway's framing work per request, in-process, with transports that write nowhere (no network): the
upstream client's exchange (`Connection.send`, then the instance's answer fed to its parser, a small JSON with
a Content-Length) and the server's request and reply (`HttpProtocol.data_received` of a predict, answered at
once by the handler). What streaming added to the fast path shows here, below what end-to-end runs resolve.

    .venv/bin/python bench/gateway/hotpath.py [--calls 50000] [--repeats 15] [--code DIR]

`--code`: the directory holding the `gateway` package to measure (default: this checkout), so that two versions
can be compared on the same machine, alternating runs (e.g. a `git worktree` of an older commit).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSWER = (b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 15:00:00 GMT\r\nserver: uvicorn\r\ncontent-length: 27\r\n"
          b"content-type: application/json\r\n\r\n{\"predictions\": [0, 1, 2]}\n")
REQUEST = (b"POST /api/predict/demo_iris HTTP/1.1\r\nHost: x\r\nUser-Agent: wrk\r\nAuthorization: bench-token\r\n"
           b"Content-Type: application/json\r\nContent-Length: 38\r\n\r\n{\"instances\": [[5.1, 3.5, 1.4, 0.2]]}\n")


class NoTransport:
    def write(self, data):
        pass

    def writelines(self, data):
        pass

    def is_closing(self):
        return False

    def close(self):
        pass

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_extra_info(self, name):
        return ("127.0.0.1", 1)

    def can_write_eof(self):
        return True

    def write_eof(self):
        pass


class NoPool:
    """Keeps nothing: the connection is reused for every exchange."""

    def append(self, connection):
        pass


async def measure(calls: int, repeats: int) -> tuple[float, float]:
    import asyncio

    from gateway import server, upstream

    pool = upstream.Pool("127.0.0.1", 1)
    pool.idle = NoPool()
    connection = upstream.Connection(pool)
    connection.connection_made(NoTransport())

    def done(status, headers, body, error):
        pass

    def handler(method, path, query, headers, body, client, reply, head):
        reply(200, [(b"content-type", b"application/json")], b"{}")

    class Head:
        stream_body = False

    best_exchange = best_server = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(calls):
            connection.send(b"POST / HTTP/1.1\r\n\r\n", b"{}", 5.0, done)
            connection.data_received(ANSWER)
        best_exchange = min(best_exchange, (time.perf_counter() - began) / calls)
        protocol = server.HttpProtocol(server.Server(handler, asyncio.get_running_loop(),
                                                     precheck=lambda method, url, headers: Head()))
        protocol.connection_made(NoTransport())
        began = time.perf_counter()
        for _ in range(calls):
            protocol.data_received(REQUEST)
        best_server = min(best_server, (time.perf_counter() - began) / calls)
    return best_exchange, best_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--code", type=Path, default=ROOT)
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    import uvloop

    exchange, served = uvloop.run(measure(args.calls, args.repeats))
    print(f"{args.code}: upstream exchange {exchange * 1e6:.2f} us, server request and reply {served * 1e6:.2f} us "
          f"(best of {args.repeats} x {args.calls})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
