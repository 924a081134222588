"""Server-side batching (metadata.rpc.batching) measured: the same model server with and without it.

    .venv/bin/python bench/batching/run.py [--trees 300] [--seconds 10] [--concurrency 1,4,16,64]
                                           [--max-batch-size 32] [--max-batch-timeout-ms 5] [--worker-threads 5]

In one run, on loopback only:

  1. trains a RandomForestClassifier of --trees trees on scikit-learn's digits (8x8 images, 64 features) and
     saves it with joblib in a temporary directory: a model whose predict costs about the same for 1 row as
     for 32 (each call walks every tree), which is what batching wins on;
  2. starts Ferry's model server twice on free ports, as the node agent starts it (`python -m
     processors.modelserver --processor sklearn ...`): once as is, once with --max-batch-size and
     --max-batch-timeout-ms (what metadata.rpc.batching passes); both with --worker-threads threads;
  3. for each concurrency C, against each server in turn: C closed-loop clients (each sends its next request
     when its answer came), each on ONE keep-alive connection, POST /v1/models/<name>:predict with one digit
     image; 1 s first, not counted, then --seconds counted. Every answer is checked against the model's own
     prediction for that image (a wrong or non-200 answer is an error);
  4. prints throughput (answers/s), p50 and p99 latency (from sending to the whole answer), the model calls
     the batched server made (its ferry_batch_size histogram on /metrics) and errors; then stops both servers.

The clients are one asyncio loop in this process; its own cost per request is far below a model call's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = "digits_forest"


def main() -> None:
    options = _options()
    with tempfile.TemporaryDirectory(prefix="ferry-batching-bench-") as work:
        images, expected = _train(Path(work), options.trees)
        servers = {
            "off": Server(Path(work), options, batching=False),
            "on": Server(Path(work), options, batching=True),
        }
        try:
            for server in servers.values():
                server.wait_ready()
            rows = []
            for concurrency in options.concurrency:
                for mode, server in servers.items():
                    calls_before = server.model_calls()
                    result = asyncio.run(_load(server.port, concurrency, options.seconds, images, expected))
                    calls = server.model_calls() - calls_before if mode == "on" else None
                    rows.append((concurrency, mode, result, calls))
                    print(f"  c={concurrency:<3} batching {mode:<3} {result.throughput:8.1f} answers/s", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    _report(rows, options)


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0, help="counted seconds per concurrency and server")
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client counts")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-timeout-ms", type=float, default=5.0)
    parser.add_argument("--worker-threads", type=int, default=5)
    options = parser.parse_args()
    options.concurrency = [int(value) for value in options.concurrency.split(",")]
    return options


def _train(work: Path, trees: int):
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    digits = load_digits()
    forest = RandomForestClassifier(n_estimators=trees, random_state=0).fit(digits.data, digits.target)
    (work / "model").mkdir()
    joblib.dump(forest, work / "model" / "model.joblib")
    images = digits.data[:256]
    return [image.tolist() for image in images], forest.predict(images).tolist()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """Ferry's model server in its own process, its output in a log file beside the model."""

    def __init__(self, work: Path, options, *, batching: bool):
        self.port = _free_port()
        argv = [sys.executable, "-m", "processors.modelserver", "--model-name", MODEL, "--processor", "sklearn",
                "--model-dir", str(work / "model"), "--http-port", str(self.port), "--host", "127.0.0.1",
                "--worker-threads", str(options.worker_threads)]
        if batching:
            argv += ["--max-batch-size", str(options.max_batch_size),
                     "--max-batch-timeout-ms", str(options.max_batch_timeout_ms)]
        self.log = open(work / f"server-{'on' if batching else 'off'}.log", "wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("FERRY_SERVICE_TOKEN", None)
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return response.read()

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the model server exited with {self.process.returncode}; see {self.log.name}")
            try:
                if self.get("/v2/health/ready"):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"the model server was not ready after {timeout} s")

    def model_calls(self) -> int:
        found = re.search(rf'^ferry_batch_size_count{{model="{MODEL}"}} ([0-9.e+]+)$',
                          self.get("/metrics").decode(), re.MULTILINE)
        return int(float(found.group(1))) if found else 0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    answers: int = 0  # every answer, the uncounted first second's too (the model calls include them)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, quantile: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000 if ordered else float("nan")


async def _load(port: int, concurrency: int, seconds: float, images, expected) -> Result:
    result = Result()
    start = time.monotonic()
    counting_from, stop_at = start + 1.0, start + 1.0 + seconds
    bodies = [json.dumps({"instances": [image]}).encode() for image in images]

    async def client(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        turn = index
        try:
            while (sent := time.monotonic()) < stop_at:
                pick = turn % len(bodies)
                turn += concurrency
                writer.write(b"POST /v1/models/%s:predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json"
                             b"\r\nContent-Length: %d\r\n\r\n%s" % (MODEL.encode(), len(bodies[pick]), bodies[pick]))
                status, body = await _response(reader)
                done = time.monotonic()
                ok = status == 200 and json.loads(body) == {"predictions": [expected[pick]]}
                result.answers += 1
                if sent >= counting_from:
                    if ok:
                        result.latencies.append(done - sent)
                    else:
                        result.errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(client(index) for index in range(concurrency)))
    result.seconds = seconds
    return result


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


def _report(rows, options) -> None:
    print()
    print(f"RandomForest of {options.trees} trees on digits (64 features), one image per request; batching: "
          f"--max-batch-size {options.max_batch_size} --max-batch-timeout-ms {options.max_batch_timeout_ms:g}; "
          f"{options.worker_threads} worker threads; {options.seconds:g} s per row")
    print()
    print("| clients | batching | answers/s | p50 ms | p99 ms | model calls | requests per call | errors |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for concurrency, mode, result, calls in rows:
        per_call = f"{result.answers / calls:.1f}" if calls else "1"
        print(f"| {concurrency} | {mode} | {result.throughput:.1f} | {result.percentile(0.50):.1f} | "
              f"{result.percentile(0.99):.1f} | {calls if calls is not None else '-'} | {per_call} | "
              f"{result.errors} |")


if __name__ == "__main__":
    main()
