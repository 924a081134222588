"""Asynchronous services' queues measured (docs/async.md): how fast the gateway accepts puts, how fast its
dispatcher drains the input through the instances into the sink, and how long a request waits for its result.

    .venv/bin/python bench/queue/run.py [--requests 5000] [--clients 8] [--instances 4] [--concurrency 4]
                                        [--work-ms 0,20]

Self-contained, like the gateway tests: a throwaway Redis (tests/harness/redis.py), one gateway
(`python -m gateway`), --instances instances of tests/gateway/queue_worker.py (each answers after --work-ms
when the body asks for it), and an async route entry written to Redis as the control plane writes it. For each
--work-ms value:

  1. --requests puts from --clients threads, each on one keep-alive connection, as fast as the gateway answers
     (POST /api/predict/<svc>, what QueueClient.put sends): the put rate, and each put's latency;
  2. from the first put until the sink holds every result (read from Redis): the drain rate, i.e. what the
     dispatcher got through the instances (at most instances x concurrency in flight), and the time from a
     request's put to its result (the sink entry's own time in its `ts` tag is not kept: the last result's
     arrival bounds it, reported as "all answered after").

Prints one row per --work-ms. The figures depend on the machine; docs/async.md has a run's.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

import redis  # noqa: E402

from contracts import sealing  # noqa: E402
from contracts.keys import changed_channel, complete_key, queue_key, routes_key  # noqa: E402
from tests.harness.process import free_port, spawn, stop  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402

WORKER = ROOT / "tests" / "gateway" / "queue_worker.py"


def wait_for(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def answers(url: str) -> bool:
    try:
        host, port = url.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=1)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False


def applied(port: int, name: str, generation: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", f"/api/v1/servicediscovery/upstreams/{name}")
        response = connection.getresponse()
        return response.status == 200 and json.loads(response.read()).get("generation") == generation
    except (OSError, ValueError):
        return False


def puts(port: int, name: str, token: str, body: bytes, count: int, clients: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    share = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]

    def client(n: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for _ in range(n):
            began = time.perf_counter()
            connection.request("POST", f"/api/predict/{name}", body=body, headers={"Authorization": token})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"put answered {response.status}")
            mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--work-ms", default="0,20")
    args = parser.parse_args()

    store_server = RedisServer()
    store_server.start()
    store_server.wait_ready()
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    env = dict(os.environ, REDIS_URL=store_server.url, FERRY_ROUTE_KEY=key, PYTHONUNBUFFERED="1")
    os.environ["FERRY_ROUTE_KEY"] = key
    store = redis.Redis.from_url(store_server.url)
    store.set(complete_key("local"), store.info("server")["run_id"])
    port = free_port()
    log = open(store_server.tmp / "gateway.log", "ab")
    gateway = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env=dict(env, FERRY_GATEWAY_PORT=str(port)),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    workers = []
    try:
        wait_for(lambda: answers(f"127.0.0.1:{port}"), "the gateway")
        instances = []
        for index in range(args.instances):
            worker_port = free_port()
            workers.append(spawn([sys.executable, str(WORKER), f"w{index}", str(worker_port)],
                                 log=store_server.tmp / f"w{index}.log", cwd=ROOT, death_signal=signal.SIGKILL))
            instances.append({"name": f"w{index}", "address": f"127.0.0.1:{worker_port}"})
        print(f"{args.requests} requests, {args.clients} clients putting, {args.instances} instances x "
              f"{args.concurrency} in flight\n")
        print("| work per request | puts/s | put p50 | put p99 | drained/s | all answered after |")
        print("|---|---|---|---|---|---|")
        for run, work_ms in enumerate(float(w) for w in args.work_ms.split(",")):
            name = f"qbench_{run}"
            token = f"token-of-{name}"
            entry = {"service": name, "cluster": "local", **sealing.token_fields(sealing.route_key(), token, "local",
                                                                                  name),
                     "timeout_ms": 30000, "instance_concurrency": args.concurrency, "generation": run + 1,
                     "versions": [{"number": 1, "weight": 100, "instances": instances}],
                     "queue": {"max_length": args.requests + 1, "max_payload_bytes": 1 << 20,
                               "sink_max_length": args.requests + 1}}
            store.hset(routes_key("local"), name, json.dumps(entry))
            store.publish(changed_channel("local"), name)
            wait_for(lambda: applied(port, name, run + 1), f"the gateway to apply {name}")
            body = (f"sleep:{work_ms / 1000};x" if work_ms else "x").encode()
            began = time.perf_counter()
            latencies = puts(port, name, token, body, args.requests, args.clients)
            put_seconds = time.perf_counter() - began
            sink = queue_key("local", name, sink=True)
            wait_for(lambda: store.xlen(sink) >= args.requests, "every result", timeout=600)
            drained = time.perf_counter() - began
            latencies.sort()
            print(f"| {work_ms:g} ms | {args.requests / put_seconds:,.0f} | "
                  f"{statistics.median(latencies) * 1000:.2f} ms | "
                  f"{latencies[int(len(latencies) * 0.99) - 1] * 1000:.2f} ms | {args.requests / drained:,.0f} | "
                  f"{drained:.2f} s |")
    finally:
        for worker in workers:
            stop(worker, signal.SIGKILL)
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(15)
        store_server.stop()


if __name__ == "__main__":
    main()
