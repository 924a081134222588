"""The pool's path alone: one request at a time through a gateway of its own to a dedicated model server and to
a pool model (the same model loaded in a pool server), with nothing else on the stack: what the mesh itself adds
per request (the key in the path, the pool's token, the pool server's lookup), apart from a platform's noise.

    .venv/bin/python bench/mesh/path.py [--requests 1500] [--rounds 3]

Starts the run's own Redis, the two model servers and the gateway (bench/common.py), publishes the routes as the
control plane does (the pool model's entry with its key and the pool's sealed token), and prints mean, p50 and
p99 per round for both.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "bench" / "gateway")]

from bench.common import ROUTE_KEY, free_port, percentile, publish_route, running_stack, start_redis, wait_http  # noqa: E402
from contracts import sealing  # noqa: E402
from run import start_gateway  # noqa: E402  -- bench/gateway/run.py
from tests.mesh.models import IRIS_SAMPLE, constant_models  # noqa: E402

BODY = json.dumps({"instances": [IRIS_SAMPLE]})
TOKEN, POOL_TOKEN, MODEL_TOKEN = "bench-token", "pool-token", "model-token"


def server(stack, name: str, port: int, token: str, *args: str):
    process = stack.start(name, [sys.executable, "-m", "processors.modelserver", "--processor", "sklearn",
                                 "--http-port", str(port), *args], cwd=ROOT,
                          env={**os.environ, "FERRY_SERVICE_TOKEN": token})
    wait_http(f"http://127.0.0.1:{port}/v2/health/ready", name, process)


def timed(port: int, path: str, token: str, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    latencies = []
    for _ in range(count):
        began = time.perf_counter()
        connection.request("POST", path, body=BODY, headers={"Authorization": token,
                                                              "Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        latencies.append((time.perf_counter() - began) * 1000)
        if answer.status != 200:
            raise SystemExit(f"{path}: {answer.status}")
    return latencies[count // 10:]  # the first tenth warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    model_dir = constant_models(Path(tempfile.mkdtemp(prefix="meshpath")), 1)[0]
    with running_stack("meshpath") as stack:
        redis_url = start_redis(stack)
        single_port, pool_port, gateway_port = free_port(), free_port(), free_port()
        server(stack, "single", single_port, TOKEN, "--model-name", "demo_iris", "--model-dir", str(model_dir))
        server(stack, "pool", pool_port, POOL_TOKEN, "--pool", "--model-name", "pool")
        import requests

        requests.post(f"http://127.0.0.1:{pool_port}/v2/repository/models/m0-v1/load", timeout=30,
                      json={"parameters": {"model_dir": str(model_dir), "served_name": "m0", "version": "1"}},
                      headers={"Authorization": POOL_TOKEN}).raise_for_status()
        publish_route(redis_url, "demo_iris", TOKEN, [f"127.0.0.1:{single_port}"])
        publish_route(redis_url, "pool", POOL_TOKEN, [f"127.0.0.1:{pool_port}"])
        key = sealing.decode_key(ROUTE_KEY, "ROUTE_KEY")
        publish_route(redis_url, "m0", MODEL_TOKEN, [], pool="pool", scale_to_zero=True,
                      versions=[{"number": 1, "weight": 100, "model": "m0-v1",
                                 "instances": [{"name": "pool-v1-0", "address": f"127.0.0.1:{pool_port}"}]}],
                      **sealing.upstream_token_fields(key, POOL_TOKEN, "local", "m0"))
        start_gateway(stack, redis_url, gateway_port, "ferry")
        print("| round | target | mean (ms) | p50 (ms) | p99 (ms) |\n|---|---|---:|---:|---:|")
        for round_number in range(1, options.rounds + 1):
            for target, path, token in (("dedicated service", "/api/predict/demo_iris", TOKEN),
                                        ("pool model", "/api/predict/m0", MODEL_TOKEN)):
                values = timed(gateway_port, path, token, options.requests)
                print(f"| {round_number} | {target} | {statistics.mean(values):.3f} | {percentile(values, 50):.3f} | "
                      f"{percentile(values, 99):.3f} |", flush=True)


if __name__ == "__main__":
    main()
