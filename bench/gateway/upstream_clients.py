#!/usr/bin/env python3
"""CPU per request of the gateway's upstream client (gateway/upstream.py) against aiohttp's pooled client,
both sending the same POST over keep-alive connections (4 concurrent) to a fast local instance stand-in
(tests/gateway/echo.py, started here). Measures the client process's CPU time only.

    .venv/bin/python bench/gateway/upstream_clients.py [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


async def ferry_client(port: int, count: int) -> tuple[float, float]:
    from gateway.upstream import Pool, request_head

    pool = Pool("127.0.0.1", port)
    head = request_head("POST", "/api/predict/x", f"127.0.0.1:{port}".encode(),
                        [(b"content-type", b"application/json")], len(BODY))

    async def worker(n: int) -> None:
        for _ in range(n):
            connection = pool.take() or await pool.connect()
            await connection.exchange(head, BODY, 5)

    return await _timed(worker, count)


async def aiohttp_client(port: int, count: int) -> tuple[float, float]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        async def worker(n: int) -> None:
            for _ in range(n):
                async with session.post(f"http://127.0.0.1:{port}/api/predict/x", data=BODY,
                                        headers={"content-type": "application/json"}) as response:
                    await response.read()

        return await _timed(worker, count)


async def _timed(worker, count: int) -> tuple[float, float]:
    await worker(20)  # connections open, code warm
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(count // 4) for _ in range(4)))
    return (time.process_time() - cpu) / count * 1e6, count / (time.perf_counter() - wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    import uvloop

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    echo = subprocess.Popen([sys.executable, str(ROOT / "tests" / "gateway" / "echo.py"), f"instance:{port}"],
                            stdout=subprocess.PIPE, text=True)
    try:
        echo.stdout.readline()  # "ready"
        for name, client in [("gateway/upstream.py", ferry_client), ("aiohttp", aiohttp_client)] * 2:
            cpu, rate = uvloop.run(client(port, args.requests))
            print(f"{name:<20} {cpu:6.1f} us CPU per request (client process)  {rate:8.0f} requests/s")
    finally:
        echo.terminate()
        echo.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
