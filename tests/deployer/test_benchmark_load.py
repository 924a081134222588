"""The benchmark runner's load loop against a real HTTP server on loopback that answers at once: the open loop keeps
to its rate and counts what it could not send as dropped, the closed loop never goes over the installation's rate
bound, and a stop ends the load within a fraction of a second."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployer.benchmarks import Load, _load_thread
from services.benchmark_config import Plan
from tests.agent.kit import wait_for


class Instant(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 -- the standard library's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Instant)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def answered(load: Load) -> int:
    with load.lock:
        return sum(map(len, load.samples.values()))


def ran(url: str, plan: Plan, max_qps: int, stop_after: int | None = None) -> tuple[Load, float]:
    """Runs the load; with stop_after, stops it once that many requests have answered. Returns how long the load
    took to end after the stop (or in all)."""
    load = Load()
    thread = threading.Thread(target=_load_thread, args=(load, plan, url, {}, max_qps))
    thread.start()
    if stop_after is not None:
        wait_for(lambda: answered(load) >= stop_after, timeout=10,
                 what=f"{stop_after} answers")
        asked = time.monotonic()
        load.stop.set()
    thread.join(30)
    assert not thread.is_alive() and not load.failure, load.failure
    took = time.monotonic() - (asked if stop_after is not None else load.started)
    return load, took


def counts(load: Load) -> tuple[int, int, set]:
    rows = load.take(before=10**9)
    return (sum(len(samples) for _, samples, _ in rows), sum(dropped for _, _, dropped in rows),
            {code for _, samples, _ in rows for _, code in samples})


def test_the_closed_loop_keeps_under_the_rate_bound(server):
    load, _ = ran(server, Plan("s", duration=2, qps=None, concurrency=8, body=b"{}"), max_qps=20)
    sent, dropped, codes = counts(load)
    assert codes == {200} and dropped == 0
    assert 30 <= sent <= 41, sent  # 20 a second for 2 s, not as many as 8 connections could send


def test_the_open_loop_keeps_its_rate(server):
    load, _ = ran(server, Plan("s", duration=2, qps=25, concurrency=4, body=b"{}"), max_qps=500)
    sent, dropped, _ = counts(load)
    assert 40 <= sent + dropped <= 50 and sent >= 40, (sent, dropped)


def test_a_stop_ends_the_load_at_once(server):
    load, took = ran(server, Plan("s", duration=60, qps=None, concurrency=2, body=b"{}"), max_qps=50,
                     stop_after=10)
    assert took < 2, took  # "within a second or two", as StopBenchmarkTask promises
    assert counts(load)[0] > 5
