#!/usr/bin/env python3
"""Time from CreateService to Running for the demo iris model, through the real platform.

Start Ferry first (`make run`), then: .venv/bin/python bench/create_to_running.py [--runs 20]
It creates bench_iris_<n> services one after another (same model as demo_iris), waits for each to be Running
by polling DescribeService, deletes it, and prints the median and p95. Talks only to 127.0.0.1.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--var-dir", default=str(ROOT / "var"))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for one service")
    args = parser.parse_args()

    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + (Path(args.var_dir) / "admin-token").read_text().strip()
    demo = session.get(f"{args.api}/api/v2/services/local/demo_iris", timeout=10)
    demo.raise_for_status()
    template = json.loads(demo.json()["ServiceConfig"])

    timings = []
    for run in range(args.runs):
        name = f"bench_iris_{run}"
        elapsed = create_and_wait(session, args.api, {**template, "name": name}, args.timeout)
        timings.append(elapsed)
        print(f"{name}: Running after {elapsed:.2f} s", flush=True)
        session.delete(f"{args.api}/api/v2/services/local/{name}", timeout=10).raise_for_status()
        wait_gone(session, args.api, name)

    timings.sort()
    p95 = timings[min(len(timings) - 1, round(0.95 * len(timings)) - 1)]
    print(f"create-to-Running over {len(timings)} creates: median {statistics.median(timings):.2f} s, "
          f"p95 {p95:.2f} s, min {timings[0]:.2f} s, max {timings[-1]:.2f} s")
    return 0


def create_and_wait(session, api: str, service_file: dict, timeout: float) -> float:
    started = time.monotonic()
    session.post(f"{api}/api/v2/services", json=service_file, timeout=10).raise_for_status()
    url = f"{api}/api/v2/services/local/{service_file['name']}"
    while time.monotonic() - started < timeout:
        body = session.get(url, timeout=10).json()
        if body.get("Status") == "Running":
            return time.monotonic() - started
        if body.get("Status") == "Failed":
            raise SystemExit(f"{service_file['name']} failed: {body.get('Message')}")
        time.sleep(0.05)
    raise SystemExit(f"{service_file['name']} was not Running after {timeout} s")


def wait_gone(session, api: str, name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if session.get(f"{api}/api/v2/services/local/{name}", timeout=10).status_code == 404:
            return
        time.sleep(0.1)
    raise SystemExit(f"{name} was not deleted within 60 s")


if __name__ == "__main__":
    sys.exit(main())
