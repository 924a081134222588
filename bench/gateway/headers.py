#!/usr/bin/env python3
"""The gateway's header work per request, in-process: `Gateway.precheck` then `Gateway.prepare`, as
gateway/server.py calls them, for a token-authenticated predict to a loaded route (no network, no Redis).

    .venv/bin/python bench/gateway/headers.py [--calls 100000] [--repeats 7] [--code DIR]

`--code`: the directory holding the `gateway` package to measure (default: this checkout), so that two versions
can be compared on the same machine, alternating runs (e.g. a `git worktree` of an older commit).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH = b"/api/predict/demo_iris"
HEADERS = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"authorization", b"bench-token"),
           (b"content-type", b"application/json"), (b"content-length", b"37"), (b"accept", b"*/*")]
BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--code", default=str(ROOT))
    args = parser.parse_args()
    sys.path.insert(0, args.code)
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    os.environ.update(REDIS_URL="redis://127.0.0.1:1/0", FERRY_ROUTE_KEY=key)  # never connected to
    import httptools

    try:
        from contracts import sealing
    except ImportError:  # a gateway from before the route keys moved to contracts/
        from gateway import sealing
    from gateway.app import Gateway, Request
    from gateway.config import Settings

    gateway = Gateway(Settings.from_env())
    token = sealing.token_fields(sealing.decode_key(key, "FERRY_ROUTE_KEY"), "bench-token", "local", "demo_iris")
    entry = {"service": "demo_iris", "cluster": "local", **token, "project": 1, "running": True,
             "timeout_ms": 5000, "max_queue_size": 64, "instance_concurrency": 0, "scale_to_zero": False,
             "mirror": None, "group": "", "group_weight": 100, "traffic_state": "standalone", "generation": 1,
             "versions": [{"number": 1, "weight": 100, "instances": [{"name": "i0", "address": "127.0.0.1:9"}]}]}

    async def load() -> None:  # the instance's connection pool wants a running loop
        gateway.table.apply("demo_iris", json.dumps(entry))

    asyncio.run(load())
    gateway.table.loaded = True

    def one() -> None:
        found = gateway.precheck("POST", PATH, HEADERS)
        assert found.__class__ is not tuple, found
        url = httptools.parse_url(PATH)
        request = ("POST", url.path.decode("latin-1"), url.query or b"", HEADERS, BODY, b"127.0.0.1")
        # An older gateway's precheck returns None when it lets the request through, and prepare takes no more.
        prepared = gateway.prepare(*request, found) if found is not None else gateway.prepare(*request)
        assert prepared.__class__ is Request, prepared

    runs = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        for _ in range(args.calls):
            one()
        runs.append((time.perf_counter() - began) / args.calls * 1e6)
    runs.sort()
    print(f"precheck + prepare: best {runs[0]:.2f} µs, median {runs[len(runs) // 2]:.2f} µs per request "
          f"({args.repeats} × {args.calls:,} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
