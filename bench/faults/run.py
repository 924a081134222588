"""Faults under load: `kill -9` of each of `make run`'s processes in turn while a service serves, and how long
until serving, then the control plane, are whole again.

    .venv/bin/python bench/faults/run.py [--service demo_iris] [--clients 4] [--settle 5] [--timeout 120]
                                         [--only instance agent ...] [--api URL] [--gateway URL]
                                         [--supervisor PID] [--json]

Run it beside `make run`, from the same tree and with the same environment (like bench/coldstart: FERRY_VAR_DIR,
DATABASE_URL, REDIS_URL). It talks only to 127.0.0.1: predictions through the gateway with the service's token,
the EAS API on --api with the admin token (<var dir>/admin-token). `make run`'s supervisor (scripts/supervise.py)
restarts what is killed; this script only kills and measures. Throughout, --clients keep-alive clients POST
predictions to the gateway back to back. For each fault in turn:

  1. waits until the platform is whole: every process below is found under the supervisor, DescribeService
     shows the service Running with all its instances ready, and the last 20 answers were 200; then --settle s;
  2. `kill -9` of the fault's process, found by command line among the supervisor's descendants (the instance:
     the pid the node agent recorded for the service's first instance, since instances outlive a killed agent
     and are then no one's child):
     instance (a model server), agent, gateway, worker (Celery), beat, autoscaler, web (gunicorn), redis;
  3. measures, until the control plane is whole again and --settle s more have passed:
     - sent / failed: requests sent in that window, and those not answered 200 (status or connection error);
     - serving whole: seconds from the kill until the first 200 answer to a request sent after the last
       failed one; 0 when none failed;
     - control plane whole: seconds from the kill until a write went through every part of the control plane
       and was carried out: UpdateService {"metadata": {"instance": n+1}} until DescribeService shows n+1
       instances ready, then back to n until it shows n ready and n in total (the web server takes the
       write, the worker reconciles over Redis, the node agent starts and stops the process; the gateway is
       not part of it: serving covers it). Each call is retried while it fails (connection refused while the
       web server restarts).
       The scale round trip runs under the same load in every row, so the rows compare with each other.

A fault that takes longer than --timeout is reported with ">" and the next one starts once all is whole again.
At the end the service's instance count is put back.

Each row also keeps the service's model-server pids (instance name -> pid, running and ready) just before the
kill and once the fault is over: an instance that was not killed must keep its pid (no healthy instance
restarted). --json prints the rows as one JSON list on stdout instead of the table (progress goes to stderr),
for tests/faults/test_every_process_killed.py, which runs this script against a `make run` of its own.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
if not os.environ.get("REDIS_URL"):  # as scripts/run
    from config.embedded_redis import embedded_redis_url  # with the password in var/redis-password

    os.environ["REDIS_URL"] = embedded_redis_url()

import psutil  # noqa: E402
import requests  # noqa: E402

IRIS_BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
# Each component as its command line shows it (bash execs the Procfile's command, so the process is the
# command itself). The main process is the one whose parent does not match too (gunicorn's and Celery's
# children are workers of it).
COMPONENTS = {
    "agent": ("manage.py", "runagent"),
    "gateway": ("-m", "gateway"),
    "worker": ("celery", "worker@%h"),  # the node names tell the reconcile worker from the fetcher
    "fetcher": ("celery", "fetcher@%h"),
    "beat": ("celery", "beat"),
    "autoscaler": ("manage.py", "runautoscaler"),
    "web": ("gunicorn", "config.wsgi"),
    "redis": ("redis-server",),
}
FAULTS = ("instance", *COMPONENTS)
CONSECUTIVE_OK = 20


# --- load ------------------------------------------------------------------------------------------------

@dataclass
class Load:
    """Keep-alive clients posting predictions back to back; every outcome is kept as (sent, done, ok)."""

    url: str
    headers: dict
    clients: int
    outcomes: list[tuple[float, float, bool]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (sent, why) of each failed request
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        for _ in range(self.clients):
            threading.Thread(target=self._client, daemon=True).start()

    def _client(self) -> None:
        parts = urlsplit(self.url)
        connection = None
        while not self.stopping.is_set():
            connection = connection or http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            sent = time.monotonic()
            try:
                connection.request("POST", parts.path, body=IRIS_BODY, headers=self.headers)
                response = connection.getresponse()
                answer = response.read()
                ok = response.status == 200
                if not ok:
                    self.failures.append((sent, f"{response.status} {answer[:160].decode(errors='replace')}"))
            except (OSError, http.client.HTTPException) as error:
                ok = False
                self.failures.append((sent, f"{type(error).__name__}: {error}"))
                connection.close()
                connection = None
                time.sleep(0.05)  # a refused connection returns at once: do not spin
            self.outcomes.append((sent, time.monotonic(), ok))

    def steady(self) -> bool:
        last = self.outcomes[-CONSECUTIVE_OK:]
        return len(last) == CONSECUTIVE_OK and all(ok for _, _, ok in last)


def serving_whole_after(outcomes: list[tuple[float, float, bool]], killed: float) -> float | None:
    """Seconds from the kill to the first 200 to a request sent after the last failure; 0 without failures;
    None when nothing succeeded after it yet."""
    after = [outcome for outcome in outcomes if outcome[0] >= killed]
    failed = [sent for sent, _, ok in after if not ok]
    if not failed:
        return 0.0
    last_failure = max(failed)
    answered = [done for sent, done, ok in after if ok and sent > last_failure]
    return min(answered) - killed if answered else None


# --- processes -------------------------------------------------------------------------------------------

SUPERVISOR_PID: int | None = None  # --supervisor: when several `make run`s share this tree


def supervisor() -> psutil.Process:
    if SUPERVISOR_PID is not None:
        try:
            return psutil.Process(SUPERVISOR_PID)
        except psutil.NoSuchProcess:
            raise SystemExit(f"the supervisor {SUPERVISOR_PID} is gone") from None
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = process.info["cmdline"] or []
        if any(part.endswith("scripts/supervise.py") for part in cmdline) and process.info["cwd"] == str(ROOT):
            return process
    raise SystemExit(f"no `make run` supervisor runs from {ROOT}: start `make run` there first")


def _matches(process: psutil.Process, words: tuple[str, ...]) -> bool:
    try:
        # Redis rewrites its title into one argument ("redis-server 127.0.0.1:6390"): split it again.
        cmdline = " ".join(process.cmdline()).split()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    if not cmdline or os.path.basename(cmdline[0]) in ("bash", "sh"):
        return False
    return all(any(word == part or part.endswith("/" + word) for part in cmdline) for word in words)


def component_pid(name: str) -> int | None:
    """The component's main process among the supervisor's descendants, or None while it is not running."""
    words = COMPONENTS[name]
    for process in supervisor().children(recursive=True):
        if _matches(process, words):
            try:
                parent = process.parent()
            except psutil.NoSuchProcess:
                continue
            if parent is None or not _matches(parent, words):
                return process.pid
    return None


def instance_pid(service_name: str) -> int | None:
    from deployer.models import LocalInstance

    row = (LocalInstance.objects.filter(service__name=service_name, desired="running", ready=True)
           .exclude(pid=None).order_by("name").first())
    return row.pid if row else None


def instance_pids(service_name: str) -> dict[str, int]:
    """name -> pid of the service's running, ready model servers."""
    from deployer.models import LocalInstance

    rows = LocalInstance.objects.filter(service__name=service_name, desired="running", ready=True).exclude(pid=None)
    return dict(rows.values_list("name", "pid"))


# --- the control plane -----------------------------------------------------------------------------------

class Api:
    def __init__(self, base: str, token: str, service: str):
        self.url = f"{base.rstrip('/')}/api/v2/services/local/{service}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def describe(self) -> dict | None:
        try:
            answer = self.session.get(self.url, timeout=5)
            return answer.json() if answer.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    def scale(self, instances: int, deadline: float) -> bool:
        while time.monotonic() < deadline:
            try:
                answer = self.session.put(self.url, json={"metadata": {"instance": instances}}, timeout=5)
                if answer.status_code in (200, 202):
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.2)
        return False

    def wait_ready(self, instances: int, deadline: float) -> bool:
        while time.monotonic() < deadline:
            body = self.describe() or {}
            if body.get("RunningInstance") == instances and body.get("TotalInstance") == instances:
                return True
            time.sleep(0.2)
        return False

    def round_trip(self, base: int, deadline: float) -> bool:
        return all(step() for step in (lambda: self.scale(base + 1, deadline),
                                       lambda: self.wait_ready(base + 1, deadline),
                                       lambda: self.scale(base, deadline),
                                       lambda: self.wait_ready(base, deadline)))


# --- one fault -------------------------------------------------------------------------------------------

@dataclass
class Row:
    fault: str
    pid: int
    sent: int
    failed: int
    serving: float | None
    control: float | None  # None: not whole within --timeout
    instances_before: dict[str, int] = field(default_factory=dict)
    instances_after: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # why each request of the window failed, with its time


def whole(load: Load, api: Api, base: int, service: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = all(component_pid(name) for name in COMPONENTS) and instance_pid(service)
        if parts and api.wait_ready(base, time.monotonic() + 1) and load.steady():
            return
        time.sleep(0.5)
    raise SystemExit(f"the platform was not whole again within {timeout:g} s; stopping here")


def inflict(fault: str, load: Load, api: Api, base: int, options) -> Row:
    pid = instance_pid(options.service) if fault == "instance" else component_pid(fault)
    if pid is None:
        raise SystemExit(f"found no process for {fault}")
    before = instance_pids(options.service)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    ok = api.round_trip(base, killed + options.timeout)
    control = time.monotonic() - killed if ok else None
    time.sleep(options.settle)  # late failures (a client's next request on a dead connection) count too
    window = [outcome for outcome in load.outcomes if outcome[0] >= killed]
    failures = [f"+{sent - killed:.3f} s: {why}" for sent, why in load.failures if sent >= killed]
    return Row(fault, pid, len(window), sum(not ok for _, _, ok in window),
               serving_whole_after(window, killed), control, before, instance_pids(options.service), failures)


def table(rows: list[Row], timeout: float) -> str:
    def seconds(value: float | None) -> str:
        return f"> {timeout:g}" if value is None else f"{value:.2f}"

    lines = ["| fault | requests sent | failed | serving whole (s) | control plane whole (s) |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {row.fault} | {row.sent} | {row.failed} | {seconds(row.serving)} | {seconds(row.control)} |"
              for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", default="demo_iris")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of load before and after each fault")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for one fault")
    parser.add_argument("--api", default="http://127.0.0.1:8000", help="the web server")
    parser.add_argument("--gateway", help="the gateway (default: FERRY_GATEWAY_URL)")
    parser.add_argument("--supervisor", type=int, help="the `make run` supervisor's pid (default: found by name)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    parser.add_argument("--only", nargs="+", choices=FAULTS, default=list(FAULTS))
    options = parser.parse_args()
    global SUPERVISOR_PID
    SUPERVISOR_PID = options.supervisor
    progress = sys.stderr if options.json else sys.stdout

    import django

    django.setup()
    from django.conf import settings

    from services.models import Service
    from services.selectors import service_token

    supervisor()  # refuses early without a `make run` here
    service = Service.objects.get(name=options.service, cluster__name="local")
    gateway = (options.gateway or settings.FERRY_GATEWAY_URL).rstrip("/")
    token = (Path(settings.VAR_DIR) / "admin-token").read_text().strip()
    api = Api(options.api, token, service.name)
    base = (api.describe() or {}).get("TotalInstance") or 1
    load = Load(f"{gateway}/api/predict/{service.name}", {"Authorization": service_token(service)}, options.clients)
    print(f"kill -9 under load: {options.clients} clients against {service.name} via {gateway}, "
          f"{base} instance(s); faults: {', '.join(options.only)}", file=progress, flush=True)
    load.start()
    rows = []
    try:
        for fault in options.only:
            whole(load, api, base, service.name, options.timeout)
            time.sleep(options.settle)
            rows.append(inflict(fault, load, api, base, options))
            print(f"  {rows[-1]}", file=progress, flush=True)
    finally:
        load.stopping.set()
        api.scale(base, time.monotonic() + 30)
        print(json.dumps([asdict(row) for row in rows]) if options.json else f"\n{table(rows, options.timeout)}")


if __name__ == "__main__":
    main()
