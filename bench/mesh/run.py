"""The model mesh measured as seed 002 measured KServe ModelMesh (fortio: 100 requests/s, 1 connection, constant
rate): latency of many models served by a small pool, the memory they take, and a first request's wait.

    .venv/bin/python bench/mesh/run.py [--models 100] [--instances 2] [--memory 2048] [--rate 100]
                                       [--seconds 30] [--windows 6] [--first 10] [--samples FILE]
                                       [--gateway URL] [--keep]

Run it beside `make run`, from the same tree and with the same environment (like bench/faults: FERRY_VAR_DIR,
DATABASE_URL, REDIS_URL; the embedded Redis on 127.0.0.1:$FERRY_REDIS_PORT when REDIS_URL is unset; the gateway
at FERRY_GATEWAY_URL, i.e. 127.0.0.1:$FERRY_GATEWAY_PORT). In this process, through Django, in project "default":

  1. makes --models small sklearn models (tests/mesh/models.py: model k answers class k % 3) under the first
     FERRY_FILE_SOURCE_ROOTS directory, creates the pool `meshbench_pool`
     ({"type": "ModelPool", "instance": --instances, "memory": --memory}), the models `meshbench_m<k>` in it,
     and `meshbench_single`, an ordinary sklearn service with one instance serving model 0; waits until all
     are Running and the gateway routes them;
  2. loads every model but the first --first ones with one request each (8 clients: a burst of first
     requests, whose latencies are reported too), then asks each of the first --first models, one after
     another and never called before, once: the time of that first request (held by the gateway while the
     placer loads the model) is "first request". Each is sent once Celery's queue in Redis has stayed empty
     for 1 s: the burst leaves one activation task per model queued, each running a placer pass, and a first
     request's own activation would wait behind them;
  3. once every model is Loaded: the resident memory (RSS, psutil) of the pool's model-server processes, summed
     over its instances (each with its children; under the sandbox the agent's pid is bubblewrap's: the command
     is the first non-bwrap process below it), against the RSS of meshbench_single's process times --models,
     i.e. one dedicated process per model. Their USS (memory no other process shares) beside it;
  4. --seconds of constant-rate load through the gateway for each target, as fortio -qps --rate -c 1 sends it:
     ONE keep-alive connection, request i sent at start + i / rate (at once when the previous answer came
     later), latency from sending to the whole answer. The pool: round robin over all its models (POST
     /api/predict/meshbench_m<k>, each with its own token; an answer other than 200 {"predictions": [k % 3]}
     is an error); the dedicated service: the same against meshbench_single; and, to tell the pool's path from
     the round robin over many models, the pool's model 0 alone. The three alternate in --windows windows
     each (pool, single, model 0, pool, ...) so that other work on the machine falls on all alike; 2 s of
     each first, not counted. --samples keeps every request's send time and latency;
  5. prints the table, seed 002's figures beside ours, and deletes what it created (the models, then the
     pool, then meshbench_single) and the model files; --keep leaves them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
if not os.environ.get("REDIS_URL"):  # as scripts/run
    from config.embedded_redis import embedded_redis_url  # with the password in var/redis-password

    os.environ["REDIS_URL"] = embedded_redis_url()

import psutil  # noqa: E402

from bench.common import percentile  # noqa: E402
from tests.mesh.models import IRIS_SAMPLE, constant_models  # noqa: E402

POOL = "meshbench_pool"
SINGLE = "meshbench_single"
PREFIX = "meshbench_m"
BODY = json.dumps({"instances": [IRIS_SAMPLE]}).encode()
SEED_002 = {"mean_ms": 7.2, "p99_ms": 9.7}  # KServe ModelMesh, fortio 100 qps, 1 connection


# --- pure --------------------------------------------------------------------------------------------------

@dataclass
class Latencies:
    """What one constant-rate run measured: each request's latency (s), the errors, how long it took."""

    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (wall clock when sent, latency s)

    def add(self, other: "Latencies") -> None:
        self.seconds += other.seconds
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.samples += other.samples

    def summary(self) -> dict:
        ms = [s * 1000 for s in self.seconds] or [float("nan")]
        return {"requests": len(self.seconds) + len(self.errors), "errors": len(self.errors),
                "rate": (len(self.seconds) + len(self.errors)) / self.elapsed if self.elapsed else 0.0,
                "mean_ms": statistics.fmean(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                "max_ms": max(ms)}


def send_time(start: float, index: int, rate: float) -> float:
    """When request `index` is due on a constant-rate schedule (fortio's -qps with one connection)."""
    return start + index / rate


def expected(index: int) -> dict:
    return {"predictions": [index % 3]}


# --- processes ---------------------------------------------------------------------------------------------

def command_of(pid: int) -> psutil.Process:
    """The model server itself: under the sandbox the agent records bubblewrap's outer pid, and the command runs
    below bwrap's own init (as tests/agent/kit.py's command_of)."""
    process = psutil.Process(pid)
    if process.name() != "bwrap":
        return process
    for child in process.children(recursive=True):
        if child.name() != "bwrap":
            return child
    raise SystemExit(f"nothing runs under bwrap {pid}")


def memory_of(service_name: str) -> dict:
    """RSS and USS (bytes) of the service's running model servers, each with its children, summed."""
    from deployer.models import LocalInstance

    rows = LocalInstance.objects.filter(service__name=service_name, desired="running", ready=True).exclude(pid=None)
    rss = uss = count = 0
    for pid in rows.values_list("pid", flat=True):
        server = command_of(pid)
        for process in [server, *server.children(recursive=True)]:
            rss += process.memory_info().rss
            try:
                uss += process.memory_full_info().uss
            except (psutil.AccessDenied, psutil.ZombieProcess):
                uss = float("nan")
        count += 1
    return {"instances": count, "rss": rss, "uss": uss}


# --- the platform ------------------------------------------------------------------------------------------

def poll(condition, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


def running(name: str, instances: int | None = None) -> bool:
    from services.models import Service

    service = Service.objects.filter(name=name, cluster__name="local").first()
    if service is None or service.phase != "Running":
        return False
    return instances is None or service.instances.filter(ready=True).count() == instances


def routed(gateway: str, name: str) -> bool:
    from services.models import Service

    generation = Service.objects.get(name=name, cluster__name="local").generation
    parts = urlsplit(gateway)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", f"/api/v1/servicediscovery/upstreams/{name}")
        answer = connection.getresponse()
        body = answer.read()
        return answer.status == 200 and json.loads(body).get("generation") == generation
    except (OSError, ValueError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def loaded_keys(pool: str) -> set[str]:
    from services.models import ModelPlacement

    return set(ModelPlacement.objects.filter(pool__name=pool, state="Loaded").values_list("key", flat=True))


def create_all(options, model_dirs: list[Path]) -> dict[str, str]:
    """Creates the pool, its models and the dedicated service; returns name -> token once all are served."""
    from services.models import Project, Service
    from services.selectors import service_token
    from services.writes import service_create

    project = Project.objects.get(name="default")
    taken = Service.objects.filter(name__startswith="meshbench_").values_list("name", flat=True)
    if taken:
        raise SystemExit(f"services of an earlier run are still there ({', '.join(sorted(taken)[:5])}, ...): "
                         "delete them first")
    service_create(actor=None, project=project, document={
        "name": POOL, "processor": "sklearn",
        "metadata": {"type": "ModelPool", "instance": options.instances, "memory": options.memory}})
    poll(lambda: running(POOL, options.instances), 300, f"{POOL} with {options.instances} ready instances")
    names = [f"{PREFIX}{index}" for index in range(options.models)]
    for name, directory in zip(names, model_dirs):
        service_create(actor=None, project=project,
                       document={"name": name, "model_path": str(directory), "metadata": {"pool": POOL}})
    service_create(actor=None, project=project, document={
        "name": SINGLE, "processor": "sklearn", "model_path": str(model_dirs[0]), "metadata": {"instance": 1}})
    for name in [*names, SINGLE]:
        poll(lambda: running(name), 600, f"{name} to be Running")
        poll(lambda: routed(options.gateway, name), 120, f"the gateway to route {name}")
    return {s.name: service_token(s) for s in Service.objects.filter(name__in=[*names, SINGLE])}


def delete_all(names: list[str]) -> None:
    """The pool's models first (a pool with models is PoolInUse), then the pool, then the dedicated service."""
    from services.models import Service
    from services.writes import service_delete

    models = [n for n in names if n.startswith(PREFIX)]
    for group in (models, [POOL, SINGLE]):
        for service in Service.objects.filter(name__in=group, cluster__name="local"):
            service_delete(actor=None, service=service)
        poll(lambda: not Service.objects.filter(name__in=group, cluster__name="local").exists(), 300,
             f"{len(group)} services to be deleted")


# --- requests ----------------------------------------------------------------------------------------------

class Client:
    """One keep-alive connection to the gateway; reopened after a connection error."""

    def __init__(self, gateway: str):
        self.parts = urlsplit(gateway)
        self.connection: http.client.HTTPConnection | None = None

    def predict(self, name: str, token: str) -> tuple[int, bytes]:
        self.connection = self.connection or http.client.HTTPConnection(self.parts.hostname, self.parts.port,
                                                                        timeout=120)
        try:
            self.connection.request("POST", f"/api/predict/{name}", body=BODY,
                                    headers={"Authorization": token, "Content-Type": "application/json"})
            answer = self.connection.getresponse()
            return answer.status, answer.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = None
            raise


def check(status: int, body: bytes, index: int) -> str | None:
    """None when the answer is model `index`'s, else what was wrong."""
    try:
        if status == 200 and json.loads(body) == expected(index):
            return None
    except ValueError:
        pass
    return f"{status} {body[:160].decode(errors='replace')}"


def constant_rate(client: Client, targets: list[tuple[str, str, int]], rate: float, seconds: float) -> Latencies:
    """fortio -qps rate -c 1: round robin over targets (name, token, index), one connection, paced."""
    result = Latencies()
    start = time.monotonic()
    total = int(rate * seconds)
    for i in range(total):
        due = send_time(start, i, rate)
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        name, token, index = targets[i % len(targets)]
        sent, wall = time.monotonic(), time.time()
        try:
            status, body = client.predict(name, token)
        except (OSError, http.client.HTTPException) as error:
            result.errors.append(f"{name}: {type(error).__name__}: {error}")
            continue
        took = time.monotonic() - sent
        wrong = check(status, body, index)
        if wrong:
            result.errors.append(f"{name}: {wrong}")
        else:
            result.seconds.append(took)
            result.samples.append((wall, took))
    result.elapsed = time.monotonic() - start
    return result


def first_request(client: Client, name: str, token: str, index: int) -> float:
    sent = time.monotonic()
    status, body = client.predict(name, token)
    took = time.monotonic() - sent
    wrong = check(status, body, index)
    if wrong:
        raise SystemExit(f"the first request of {name} failed: {wrong}")
    return took


def warm(gateway: str, targets: list[tuple[str, str, int]]) -> tuple[list[float], list[str]]:
    """One request to each target, 8 at a time: a burst of first requests. Returns their latencies and the
    failures."""
    local = threading.local()

    def one(target):
        local.client = getattr(local, "client", None) or Client(gateway)
        name, token, index = target
        sent = time.monotonic()
        try:
            wrong = check(*local.client.predict(name, token), index)
        except (OSError, http.client.HTTPException) as error:
            wrong = f"{type(error).__name__}: {error}"
        return time.monotonic() - sent, wrong

    with ThreadPoolExecutor(8) as executor:
        outcomes = list(executor.map(one, targets))
    return ([took for took, wrong in outcomes if not wrong],
            [f"{t[0]}: {wrong}" for t, (_, wrong) in zip(targets, outcomes) if wrong])


def quiet(redis_url: str, queue: str = "celery", still: float = 1.0, timeout: float = 120) -> float:
    """Waits until the control plane's task queue has stayed empty for `still` s (the activations a burst of
    first requests leaves queued run a placer pass each, and a later first request's activation waits behind
    them); returns how long it waited."""
    import redis

    client = redis.Redis.from_url(redis_url)
    began = time.monotonic()
    empty_since = None
    while time.monotonic() - began < timeout:
        if client.llen(queue):
            empty_since = None
        elif empty_since is None:
            empty_since = time.monotonic()
        elif time.monotonic() - empty_since >= still:
            return time.monotonic() - began
        time.sleep(0.05)
    raise SystemExit(f"the Celery queue {queue!r} was not empty for {still:g} s within {timeout:g} s")


# --- report ------------------------------------------------------------------------------------------------

def mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def report(options, pool_load: dict, single_load: dict, one_load: dict, firsts: list[float], burst: list[float],
           empty: dict, full: dict, single: dict) -> str:
    lines = [f"Model mesh, {options.models} models on a pool of {options.instances} instances "
             f"({options.memory} MB each); load {options.rate:g} requests/s, 1 keep-alive connection, "
             f"{options.seconds:g} s each (in {options.windows} alternating windows), through the gateway",
             "",
             "| load | requests | errors | achieved rate (/s) | mean (ms) | p50 (ms) | p99 (ms) | max (ms) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, row in ((f"pool: round robin over {options.models} models", pool_load),
                       ("dedicated single-model service (1 instance)", single_load),
                       (f"pool: {PREFIX}0 alone (the pool's path, one model)", one_load)):
        lines.append(f"| {label} | {row['requests']} | {row['errors']} | {row['rate']:.1f} | {row['mean_ms']:.2f} "
                     f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['max_ms']:.2f} |")
    lines.append(f"| seed 002 (KServe ModelMesh, fortio 100 qps -c 1) | | | | {SEED_002['mean_ms']} | "
                 f"| {SEED_002['p99_ms']} | |")
    ms = sorted(f * 1000 for f in firsts)
    burst_ms = [b * 1000 for b in burst]
    lines += ["",
              f"First request of an unloaded model ({len(ms)} models, one after another, each once the task "
              f"queue is empty, {options.models - len(ms)} already loaded): p50 {percentile(ms, 50):.0f} ms, "
              f"max {max(ms):.0f} ms (each: {', '.join(f'{m:.0f}' for m in ms)} ms)",
              f"First requests in a burst (the warm-up: {len(burst_ms)} unloaded models, 8 clients): "
              f"p50 {percentile(burst_ms, 50):.0f} ms, max {max(burst_ms):.0f} ms",
              "",
              "| resident memory | RSS | USS |",
              "|---|---:|---:|",
              f"| pool, {empty['instances']} instances, empty | {mib(empty['rss'])} | {mib(empty['uss'])} |",
              f"| pool, {full['instances']} instances, {options.models} models loaded | {mib(full['rss'])} "
              f"| {mib(full['uss'])} |",
              f"| one dedicated single-model instance (measured) | {mib(single['rss'])} | {mib(single['uss'])} |",
              f"| one dedicated instance per model: measured x {options.models} | {mib(single['rss'] * options.models)} "
              f"| {mib(single['uss'] * options.models)} |",
              "",
              f"Pool with {options.models} models: {full['rss'] / (single['rss'] * options.models):.1%} of the "
              f"RSS of one process per model; the models added {mib(full['rss'] - empty['rss'])} "
              f"({mib((full['rss'] - empty['rss']) / options.models)} per model) to the empty pool."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--memory", type=int, default=2048, help="MB per pool instance")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="of load, per target")
    parser.add_argument("--windows", type=int, default=6, help="the load alternates pool/single this many times")
    parser.add_argument("--samples", help="also write every request's (send time, latency) to this JSON file")
    parser.add_argument("--first", type=int, default=10, help="models whose first request is timed")
    parser.add_argument("--gateway", help="default: FERRY_GATEWAY_URL")
    parser.add_argument("--keep", action="store_true", help="leave the services and model files")
    options = parser.parse_args()
    if not 0 < options.first < options.models:
        parser.error("--first must be at least 1 and below --models")
    if options.windows < 1 or options.rate <= 0 or options.seconds <= 0:
        parser.error("--windows, --rate and --seconds must be positive")

    import django

    django.setup()
    logging.getLogger("ferry.events").setLevel(logging.WARNING)  # one line per created/deleted service: noise here
    from django.conf import settings

    options.gateway = (options.gateway or settings.FERRY_GATEWAY_URL).rstrip("/")
    work = Path(settings.FERRY_FILE_SOURCE_ROOTS[0]) / "meshbench"  # where file sources may come from
    print(f"model files in {work}; gateway {options.gateway}", flush=True)
    model_dirs = constant_models(work, options.models)
    names = [f"{PREFIX}{index}" for index in range(options.models)]
    try:
        began = time.monotonic()
        tokens = create_all(options, model_dirs)
        print(f"created {POOL}, {options.models} models and {SINGLE}: all Running and routed in "
              f"{time.monotonic() - began:.0f} s", flush=True)
        time.sleep(3)  # the pool's instances settle after start (imports done) before the empty RSS is read
        empty = memory_of(POOL)
        targets = [(name, tokens[name], index) for index, name in enumerate(names)]

        began = time.monotonic()
        burst, failures = warm(options.gateway, targets[options.first:])
        if failures:
            raise SystemExit(f"{len(failures)} warm-up requests failed: {failures[:5]}")
        want = {f"{name}-v1" for name in names[options.first:]}
        poll(lambda: want <= loaded_keys(POOL), 120, "the warmed models to be Loaded")
        print(f"loaded {len(want)} models in {time.monotonic() - began:.0f} s", flush=True)

        client = Client(options.gateway)
        firsts = []
        for name, token, index in targets[:options.first]:
            waited = quiet(os.environ["REDIS_URL"])
            firsts.append(first_request(client, name, token, index))
            print(f"  first request of {name}: {firsts[-1] * 1000:.0f} ms (after {waited:.1f} s for an empty "
                  "task queue)", flush=True)
        poll(lambda: {f"{n}-v1" for n in names} <= loaded_keys(POOL), 120, "every model to be Loaded")

        # The two loads alternate in --windows windows each, on the same connection, so that whatever else
        # runs on the machine meanwhile falls on both alike; 2 s of each first, not counted.
        loads = {"pool": (targets, Latencies()), "single": ([(SINGLE, tokens[SINGLE], 0)], Latencies()),
                 "pool_one": (targets[:1], Latencies())}
        for which, (chosen, _) in loads.items():
            constant_rate(client, chosen, options.rate, 2)
        for window in range(options.windows):
            for which, (chosen, total) in loads.items():
                part = constant_rate(client, chosen, options.rate, options.seconds / options.windows)
                total.add(part)
                summary = part.summary()
                print(f"  window {window + 1} {which}: mean {summary['mean_ms']:.2f} ms, p99 "
                      f"{summary['p99_ms']:.2f} ms, {summary['errors']} errors", flush=True)
        pool_load, single_load, one_load = (loads[which][1].summary() for which in ("pool", "single", "pool_one"))
        if options.samples:
            Path(options.samples).write_text(json.dumps({which: {"samples": total.samples, "errors": total.errors}
                                                         for which, (_, total) in loads.items()}))
        if not {f"{n}-v1" for n in names} <= loaded_keys(POOL):
            print("note: some models were no longer Loaded after the load", flush=True)
        full = memory_of(POOL)
        single = memory_of(SINGLE)
        print("\n" + report(options, pool_load, single_load, one_load, firsts, burst, empty, full, single), flush=True)
    finally:
        if not options.keep:
            delete_all([*names, POOL, SINGLE])
            shutil.rmtree(work, ignore_errors=True)
            print("deleted the services and the model files", flush=True)


if __name__ == "__main__":
    main()
