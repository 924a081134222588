"""The benchmark runner: sends a task's load to its service through the cluster's own gateway and writes its
progress and per-second report rows as it goes (docs/benchmarks.md).

Two threads: the load runs in an asyncio loop of its own (httpx, one pooled client), and this thread, which owns
the database connection (Django refuses queries from inside an event loop), drains what finished every half
second, writes a row per completed second with the progress and a heartbeat, and reads the task back: Stopping,
deleted or restarted (another attempt) stops the load within a second. Open loop at `base.qps` (a request is sent
on schedule whether or not earlier ones answered; when `base.concurrency` are already in flight it is counted as
Dropped instead, so the rate and the concurrency both stay bounded), or closed loop at `base.concurrency` (never
faster than FERRY_BENCHMARK_MAX_QPS).

A worker killed mid-run stops the heartbeat; `sweep` (beat, every 10 s) marks such a task Error, and a
redelivered run of it (acks_late) does the same rather than running again behind the user's back."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import defaultdict
from datetime import timedelta

import httpx
from django.conf import settings
from django.utils import timezone

from services import benchmark_config, benchmark_report
from services.models import BenchmarkState, BenchmarkTask
from services.selectors import service_token

logger = logging.getLogger(__name__)
# httpx logs every request at INFO: at hundreds a second that would drown the worker's log.
logging.getLogger("httpx").setLevel(logging.WARNING)
FLUSH_SECONDS = 0.5


class Load:
    """What the load thread shares with the writer thread: finished samples, by second of the run."""

    def __init__(self):
        self.lock = threading.Lock()
        self.samples: dict[int, list[tuple[float, int]]] = defaultdict(list)
        self.dropped: dict[int, int] = defaultdict(int)
        self.stop = threading.Event()
        self.done = threading.Event()
        self.failure: str = ""
        self.started = time.monotonic()

    def record(self, second: int, latency_ms: float, code: int) -> None:
        with self.lock:
            self.samples[second].append((latency_ms, code))

    def drop(self, second: int) -> None:
        with self.lock:
            self.dropped[second] += 1

    def take(self, before: int) -> list[tuple[int, list, int]]:
        """The seconds before `before`: a request counts in the second it finished in, so a past second is final."""
        with self.lock:
            seconds = sorted(s for s in set(self.samples) | set(self.dropped) if s < before)
            return [(s, self.samples.pop(s, []), self.dropped.pop(s, 0)) for s in seconds]


def target_url(task: BenchmarkTask, plan: benchmark_config.Plan) -> str:
    """The service on its cluster's own gateway, never another host (the writes refuse other clusters)."""
    return f"{settings.FERRY_GATEWAY_URL.rstrip('/')}/api/predict/{task.service.name}{plan.path}"


def run(task_id: int, attempt: int) -> str:
    """Runs one attempt of a task to its end; returns the state it ended in ('' when it was not ours to run)."""
    task = BenchmarkTask.objects.select_related("service", "cluster").filter(pk=task_id).first()
    if task is None or task.attempt != attempt:
        return ""
    if task.state in (BenchmarkState.RUNNING, BenchmarkState.STOPPING):
        # Delivered again: the worker that ran it died (acks_late). Say so rather than run twice.
        return _finish(task, BenchmarkState.ERROR, "WorkerLost", "the worker running it was lost; start it again")
    if task.state not in (BenchmarkState.CREATING, BenchmarkState.STARTING):
        return ""
    try:
        plan = benchmark_config.plan_of(task.config, _bounds())
    except benchmark_config.ConfigError as error:
        return _finish(task, BenchmarkState.ERROR, "InvalidConfig", str(error))
    now = timezone.now()
    claimed = BenchmarkTask.objects.filter(pk=task.pk, attempt=attempt, state=task.state).update(
        state=BenchmarkState.RUNNING, started_at=now, heartbeat_at=now, progress=0.0, report={}, reason="",
        updated_at=now)
    if not claimed:
        return ""
    headers = {"Authorization": service_token(task.service), "Content-Type": "application/json", **plan.headers}
    load = Load()
    max_qps = settings.FERRY_BENCHMARK_MAX_QPS
    thread = threading.Thread(target=lambda: _load_thread(load, plan, target_url(task, plan), headers, max_qps),
                              name=f"benchmark-{task.pk}", daemon=True)
    thread.start()
    rows: list[dict] = []
    latencies: list[float] = []
    outcome = (BenchmarkState.COMPLETED, "Completed", "")
    while True:
        finished = load.done.wait(FLUSH_SECONDS)
        elapsed = time.monotonic() - load.started
        complete = load.take(before=10**9 if finished else int(elapsed))
        for second, samples, dropped in complete:
            rows.append(benchmark_report.row(second, samples, dropped))
            latencies.extend(latency for latency, _ in samples)
        progress = 100.0 if finished and not load.stop.is_set() else min(99.9, 100.0 * elapsed / plan.duration)
        report = {"Summary": benchmark_report.summary(rows, latencies, duration=min(elapsed, plan.duration)),
                  "Rows": rows}
        fields = {"progress": progress, "heartbeat_at": timezone.now(), "updated_at": timezone.now()}
        if complete or finished:
            fields["report"] = report
        if not BenchmarkTask.objects.filter(pk=task.pk, attempt=attempt).update(**fields):
            load.stop.set()  # deleted or restarted: its rows are no one's now
            thread.join(5)
            return ""
        if finished:
            break
        state = BenchmarkTask.objects.filter(pk=task.pk).values_list("state", flat=True).first()
        if state == BenchmarkState.STOPPING and not load.stop.is_set():
            load.stop.set()
            outcome = (BenchmarkState.STOPPED, "StoppedByUser", "stopped before its duration ended")
    thread.join(5)
    if load.failure:
        outcome = (BenchmarkState.ERROR, "LoadFailed", load.failure)
    state, reason, message = outcome
    summary = report["Summary"]
    message = message or (f"{summary['Requests']} requests, {summary['AvgQps']} requests/s, "
                          f"p99 {summary['LatencyMs']['P99']} ms, {summary['Errors']} errors")
    return _finish(task, state, reason, message)


def sweep(now=None) -> int:
    """Marks Error every running task whose runner has not reported for FERRY_BENCHMARK_STALE_SECONDS."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.FERRY_BENCHMARK_STALE_SECONDS)
    lost = BenchmarkTask.objects.filter(state__in=(BenchmarkState.RUNNING, BenchmarkState.STOPPING),
                                        heartbeat_at__lt=stale)
    return lost.update(state=BenchmarkState.ERROR, reason="WorkerLost", finished_at=now, updated_at=now,
                       message="its runner stopped reporting (the worker was lost); start it again")


def _finish(task: BenchmarkTask, state: str, reason: str, message: str) -> str:
    now = timezone.now()
    BenchmarkTask.objects.filter(pk=task.pk, attempt=task.attempt).update(
        state=state, reason=reason, message=message, finished_at=now, updated_at=now)
    logger.info("benchmark %s ended %s: %s", task.name, state, message)
    return state


def _bounds() -> benchmark_config.Bounds:
    return benchmark_config.Bounds(max_qps=settings.FERRY_BENCHMARK_MAX_QPS,
                                   max_seconds=settings.FERRY_BENCHMARK_MAX_SECONDS,
                                   max_concurrency=settings.FERRY_BENCHMARK_MAX_CONCURRENCY)


def _load_thread(load: Load, plan: benchmark_config.Plan, url: str, headers: dict, max_qps: int) -> None:
    try:
        asyncio.run(_load(load, plan, url, headers, max_qps))
    except Exception as exc:  # noqa: BLE001 -- the writer thread reports it on the task
        logger.exception("benchmark load failed")
        load.failure = f"{type(exc).__name__}: {exc}"
    finally:
        load.done.set()


async def _load(load: Load, plan: benchmark_config.Plan, url: str, headers: dict, max_qps: int) -> None:
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
    timeout = httpx.Timeout(plan.timeout_ms / 1000)
    deadline = load.started + plan.duration
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        async def one() -> None:
            sent = time.monotonic()
            try:
                answer = await client.request(plan.method, url, content=plan.body or None, headers=headers)
                code = answer.status_code
            except httpx.HTTPError:
                code = 0  # no answer: a connection error or a timeout
            done = time.monotonic()
            load.record(int(done - load.started), (done - sent) * 1000, code)

        if plan.qps is None:
            # Closed loop, but never faster than this installation's rate bound: a service answering at once
            # (or refusing at once) would otherwise take as many requests a second as the loop can send.
            starts = itertools.count()

            async def worker() -> None:
                while not load.stop.is_set():
                    due = load.started + next(starts) / max_qps
                    if due >= deadline:
                        return
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    await one()
            await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
            return
        in_flight: set[asyncio.Task] = set()
        sent = 0
        while not load.stop.is_set():
            due = load.started + sent / plan.qps  # the schedule, not the previous send: no drift
            if due >= deadline:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            sent += 1
            if len(in_flight) >= plan.concurrency:
                load.drop(int(time.monotonic() - load.started))
                continue
            request = asyncio.create_task(one())
            in_flight.add(request)
            request.add_done_callback(in_flight.discard)
        if in_flight and not load.stop.is_set():
            await asyncio.wait(in_flight, timeout=plan.timeout_ms / 1000 + 1)
        for request in in_flight:
            request.cancel()
