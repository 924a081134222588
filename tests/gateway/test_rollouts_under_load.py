"""Rollouts under continuous load (no request may fail during any switch): a real gateway, a real node agent
and real demo_iris model servers, with keep-alive clients posting to the gateway on loopback through the
whole sequence create -> canary 20 % -> 50 % -> promote -> rollback -> blue-green deploy -> switch ->
finish, while the control plane is driven with the service-layer writes and `converge` (what the Celery
worker and beat do in production).

For each phase with a fixed split, once the gateway has the phase's route, the next 5,000 answers (by the
`ferry-version` header) must hold the split within ±2 points; promote and rollback must take effect within
2 s (from the call until the send time of the last request answered by the version they move away from);
and across the whole sequence there must be no answer other than 2xx and no connection error.

The node agent runs with its warm pool on (FERRY_WARM_POOL_SIZE=1, as `make run` does): the rollback after a
promotion starts version 1 again (its instances stopped when version 2 took all traffic), and a standby model
server with its imports done makes that start take a fraction of a second instead of a cold start of 2-3 s
under this load. Version 2 keeps serving until version 1 is ready (a rolling rollback), so the start costs no
request either way; the pool is what keeps the rollback within 2 s.

Figures are printed (`pytest -s`) and repeated in assertion messages. Only the two 2 s bounds are timings.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import psutil
import pytest
import requests

from processors.demo import IRIS_SAMPLE, demo_service_files
from processors.modelserver.handoff import POOL_MARK
from services.models import Project, Service
from services.selectors import service_token
from services.writes import (
    rollout_finish,
    rollout_promote,
    rollout_rollback,
    rollout_set_canary_weight,
    rollout_switch,
    service_create,
    service_update,
)

from tests.e2e.control_plane import Answer, LoadGenerator

from .conftest import converge

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

WINDOW = 5000  # answers per measured phase
TOLERANCE = 2.0  # points of share
TAKE_EFFECT_LIMIT = 2.0  # seconds, for promote and rollback
THREADS = 4  # keep-alive client connections
CONVERGE_TIMEOUT = 120.0  # generous: the machine may be busy with other tests
IRIS_BODY = json.dumps({"instances": [IRIS_SAMPLE]}).encode()


def weights(service: Service) -> dict[int, int]:
    return {v.number: v.weight for v in service.versions.all() if v.weight}


def ready_versions(service: Service) -> set[int]:
    return set(service.instances.filter(ready=True).values_list("version__number", flat=True))


def versions_running(service: Service) -> set[int]:
    return set(service.instances.values_list("version__number", flat=True))


def gateway_split(gateway, service: Service, expected: dict[int, int], timeout: float = 30.0) -> float:
    """Waits until the gateway routes by `expected` ({version: weight}, ready instances of weighted versions, as
    its discovery endpoint tells); returns the time it was seen."""
    port_version = dict(service.instances.filter(ready=True).values_list("port", "version__number"))
    url = f"{gateway.url}/api/v1/servicediscovery/upstreams/{service.name}"
    deadline = time.monotonic() + timeout
    while True:
        items = requests.get(url, timeout=5).json()["endpoints"]["items"]
        seen: Counter = Counter()
        for item in items:
            seen[port_version.get(item["port"])] += item["weight"] / 100
        if dict(seen) == {number: weight for number, weight in expected.items() if weight}:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"the gateway routes {service.name} as {dict(seen)}, not {expected}")
        time.sleep(0.02)


def shares(window: list[Answer]) -> dict[int | None, float]:
    counts = Counter(answer.version for answer in window)
    return {version: 100 * count / len(window) for version, count in sorted(counts.items(), key=str)}


def take_effect(load: LoadGenerator, called: float, away_from: int, until: float) -> tuple[float, float]:
    """Seconds from the call until the last request (by send time) that the old version still answered, and the
    slowest answer to a request sent in between (latency is printed, never asserted)."""
    between = [answer for answer in load.answers[:] if called <= answer.sent <= until]
    late = [answer.sent for answer in between if answer.version == away_from]
    seconds = max(late) - called if late else 0.0
    slowest = max((a.done - a.sent for a in between if a.sent <= called + seconds), default=0.0)
    return seconds, slowest


def latency_ms(answers: list[Answer]) -> str:
    took = sorted(1000 * (answer.done - answer.sent) for answer in answers)
    if not took:
        return "no answers"
    return (f"latency p50 {took[len(took) // 2]:.1f} ms, p99 {took[int(len(took) * 0.99)]:.1f} ms, "
            f"max {took[-1]:.1f} ms")


def pool_processes(var_dir) -> list[psutil.Process]:
    """Standby model servers of this cluster's warm pool, and instances that were standbys."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get(POOL_MARK) == str(var_dir):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


@pytest.fixture
def warm_cluster(monkeypatch, request):
    """The e2e local cluster with the agent's warm pool on (the agent inherits the environment)."""
    monkeypatch.setenv("FERRY_WARM_POOL_SIZE", "1")
    cluster = request.getfixturevalue("local_cluster")
    yield cluster
    for agent in cluster.agents:  # SIGTERM stops the standbys with the instances
        if agent.running():
            agent.send(15)
            agent.wait(60)
    left = pool_processes(cluster.var_dir)
    for process in left:
        process.kill()
    assert not left, f"warm-pool processes outlived the agent: {left}"


def test_every_strategy_holds_its_split_and_switches_without_a_failed_request(warm_cluster, demo_models, gateway):
    document = next(f for f in demo_service_files(demo_models) if f["name"] == "demo_iris")
    iris = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
    iris = converge(iris, lambda s: s.phase == "Running", CONVERGE_TIMEOUT, "demo_iris Running")
    gateway_split(gateway, iris, {1: 100})

    load = LoadGenerator(gateway.port, "/api/predict/demo_iris", {"Authorization": service_token(iris)},
                         body=IRIS_BODY, threads=THREADS)
    figures: list[str] = []
    problems: list[str] = []

    def measure(phase: str, service: Service, expected: dict[int, int]) -> None:
        applied = gateway_split(gateway, service, expected)
        window = load.next_window(applied, WINDOW)
        got = shares(window)
        span = window[-1].done - window[0].sent
        line = (f"{phase}: target {expected}, observed " + ", ".join(f"v{v} {s:.2f} %" for v, s in got.items())
                + f" over {len(window)} answers in {span:.1f} s ({len(window) / span:.0f}/s; {latency_ms(window)})")
        figures.append(line)
        print(line, flush=True)
        for version in set(expected) | set(got):
            if abs(got.get(version, 0.0) - expected.get(version, 0)) > TOLERANCE:
                problems.append(f"{phase}: version {version} got {got.get(version, 0.0):.2f} %, "
                                f"target {expected.get(version, 0)} % ± {TOLERANCE:g}")

    def effect(action: str, called: float, away_from: int, limit: float | None) -> None:
        seconds, slowest = take_effect(load, called, away_from, until=time.monotonic())
        line = (f"{action} took effect in {seconds:.3f} s (last request answered by version {away_from}; "
                f"slowest answer meanwhile {1000 * slowest:.1f} ms)")
        figures.append(line)
        print(line, flush=True)
        if limit is not None and seconds >= limit:
            problems.append(f"{action} took effect in {seconds:.3f} s, not within {limit:g} s")

    load.start()
    began = time.monotonic()
    try:
        # Canary: version 2 takes 20 % once it is ready, then 50 %.
        iris = service_update(actor=None, service=iris, patch={"warm_up_data_path": None}, strategy="canary",
                              canary_weight=20)
        iris = converge(iris, lambda s: weights(s) == {1: 80, 2: 20}, CONVERGE_TIMEOUT, "a 20 % canary")
        measure("canary 20 %", iris, {1: 80, 2: 20})
        rollout_set_canary_weight(actor=None, service=iris, weight=50)
        iris = converge(iris, lambda s: weights(s) == {1: 50, 2: 50}, CONVERGE_TIMEOUT, "a 50 % canary")
        measure("canary 50 %", iris, {1: 50, 2: 50})

        # Promote: version 2 takes everything; version 1's instance stops.
        called = time.monotonic()
        rollout_promote(actor=None, service=iris)
        iris = converge(iris, lambda s: weights(s) == {2: 100} and s.rollout is None and versions_running(s) == {2},
                        CONVERGE_TIMEOUT, "the promotion")
        measure("promoted", iris, {2: 100})
        effect("promote", called, away_from=1, limit=TAKE_EFFECT_LIMIT)

        # Rollback: version 1 starts again while version 2 serves, then takes everything.
        called = time.monotonic()
        iris = rollout_rollback(actor=None, service=iris)
        assert (iris.rollout or {}).get("strategy") == "rolling", iris.rollout  # the path this test is about
        iris = converge(iris, lambda s: weights(s) == {1: 100} and s.rollout is None and versions_running(s) == {1},
                        CONVERGE_TIMEOUT, "the rollback")
        measure("rolled back", iris, {1: 100})
        effect("rollback", called, away_from=2, limit=TAKE_EFFECT_LIMIT)

        # Blue-green: green (version 3) comes up at 0 %, the switch moves everything, finish stops blue.
        iris = service_update(actor=None, service=iris, patch={"warm_up_data_path": None}, strategy="blue-green")
        iris = converge(iris, lambda s: s.rollout and s.rollout["state"] == "AwaitingSwitch", CONVERGE_TIMEOUT,
                        "green ready")
        measure("blue-green, green ready", iris, {1: 100, 3: 0})
        called = time.monotonic()
        rollout_switch(actor=None, service=iris)
        iris = converge(iris, lambda s: s.rollout["state"] == "Switched" and ready_versions(s) == {1, 3},
                        CONVERGE_TIMEOUT, "the switch")
        measure("switched", iris, {3: 100})
        effect("switch", called, away_from=1, limit=None)
        rollout_finish(actor=None, service=iris)
        iris = converge(iris, lambda s: s.rollout is None and versions_running(s) == {3}, CONVERGE_TIMEOUT,
                        "blue to stop")
        measure("finished", iris, {3: 100})
    finally:
        load.stop()

    answers = load.since(began)
    statuses = Counter(answer.status for answer in answers)
    failed = {status: count for status, count in statuses.items() if not 200 <= status < 300}
    summary = (f"{len(answers)} requests in {time.monotonic() - began:.0f} s, statuses {dict(statuses)}, "
               f"{len(load.errors)} connection errors; {latency_ms(answers)}")
    figures.append(summary)
    print(summary, flush=True)
    report = "\n".join(figures)
    assert not failed, f"answers other than 2xx: {failed}\n{report}"
    assert not load.errors, f"connection errors: {load.errors[:5]}\n{report}"
    assert not problems, "\n".join(problems) + "\n" + report
