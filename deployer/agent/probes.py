"""Readiness probes: HTTP GET on the instance's port, run on a small thread pool so the loop never waits.

A probe is ready on 200 only (as the contract says), anything else or no answer within the timeout is not
ready. Results are keyed by (instance name, pid): a late answer about a process that has since been
replaced is never mistaken for the new one's.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

PROBE_TIMEOUT_SECONDS = 1.0


def probe_http(port: int, path: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "ferry-node-agent"})
        response = connection.getresponse()
        response.read(65536)
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


class Prober:
    def __init__(self, on_result: Callable[[], None] = lambda: None, workers: int = 8):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ferry-probe")
        self._in_flight: dict[tuple[str, int], Future] = {}
        self._on_result = on_result  # wakes the loop, so readiness is reported without waiting for a tick

    def submit(self, name: str, pid: int, port: int, path: str) -> None:
        key = (name, pid)
        if key in self._in_flight:
            return
        future = self._pool.submit(probe_http, port, path)
        future.add_done_callback(lambda _future: self._on_result())
        self._in_flight[key] = future

    def in_flight(self, name: str, pid: int) -> bool:
        return (name, pid) in self._in_flight

    def result(self, name: str, pid: int) -> bool | None:
        """True or False once a probe finished (then forgotten), None while one runs or none was sent."""
        future = self._in_flight.get((name, pid))
        if future is None or not future.done():
            return None
        del self._in_flight[(name, pid)]
        return future.result()

    def forget(self, name: str) -> None:
        for key in [key for key in self._in_flight if key[0] == name]:
            del self._in_flight[key]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
