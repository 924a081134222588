"""Real processes for gateway tests: the gateway (`python -m gateway`) on the harness's Redis, fast echo instances
(echo.py), route entries written to Redis exactly as deployer.routing publishes them, and a load generator.

The e2e fixtures (a real node agent and model servers) come from tests/e2e/conftest.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis

from contracts import sealing
from contracts.keys import changed_channel, routes_key
from tests.e2e.conftest import converge, demo_models, local_cluster  # noqa: F401 -- fixtures
from tests.harness.process import free_port, spawn, stop

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ROUTES_KEY = routes_key("local")  # the gateway serves the local cluster
CHANGED_CHANNEL = changed_channel("local")
# /metrics is served only with this Bearer token (FERRY_GATEWAY_METRICS_TOKEN); test gateways get this one.
METRICS_TOKEN = "metrics-token-of-the-tests"


class Process:
    def __init__(self, popen: subprocess.Popen, log: Path):
        self.popen = popen
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop(self.popen, sig)


class Gateway(Process):
    def __init__(self, popen, log, port: int):
        super().__init__(popen, log)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def metrics(self) -> str:
        request = urllib.request.Request(self.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read().decode()


def start_gateway(tmp_path: Path, args: tuple = (), **env: str) -> Gateway:
    port = free_port()
    log = tmp_path / f"gateway-{port}.log"
    env = {"FERRY_GATEWAY_METRICS_TOKEN": METRICS_TOKEN, **env}
    environment = dict(os.environ, FERRY_GATEWAY_PORT=str(port), PYTHONUNBUFFERED="1", **env)
    with open(log, "ab") as out:
        popen = subprocess.Popen([sys.executable, "-m", "gateway", *args], cwd=REPO,
                                 env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    gateway = Gateway(popen, log, port)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(gateway.url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return gateway
        except OSError:
            pass
        if popen.poll() is not None or time.monotonic() > deadline:
            gateway.stop()
            raise AssertionError(f"the gateway did not become ready:\n{gateway.output()}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    running = start_gateway(tmp_path_factory.mktemp("gateway"))
    yield running
    running.stop()
    assert running.popen.returncode == 0, f"the gateway did not stop cleanly:\n{running.output()[-3000:]}"


class Echo(Process):
    def __init__(self, popen, log, addresses: dict[str, str]):
        super().__init__(popen, log)
        self.addresses = addresses  # name -> "127.0.0.1:port"

    def counts(self) -> Counter:
        return Counter(self._count()["counts"])

    def paths(self, name: str) -> Counter:
        """The paths (without query) instance `name` was called with, and how often."""
        return Counter(self._count()["paths"].get(name, {}))

    def _count(self) -> dict:
        any_address = next(iter(self.addresses.values()))
        with urllib.request.urlopen(f"http://{any_address}/_count", timeout=5) as response:
            return json.loads(response.read())

    def instance(self, name: str) -> dict:
        return {"name": name, "address": self.addresses[name]}


@pytest.fixture
def echo(tmp_path):
    """echo(*names) starts one process serving an instance per name; all are stopped after the test."""
    started: list[Echo] = []

    def start(*names: str) -> Echo:
        addresses = {name: f"127.0.0.1:{free_port()}" for name in names}
        log = tmp_path / f"echo-{len(started)}.log"
        specs = [f"{n}:{a.rpartition(':')[2]}" for n, a in addresses.items()]
        popen = spawn([sys.executable, str(HERE / "echo.py"), *specs], log=log, cwd=REPO, death_signal=signal.SIGKILL)
        server = Echo(popen, log, addresses)
        started.append(server)
        deadline = time.monotonic() + 15
        while "ready" not in server.output():
            if popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"echo instances did not start:\n{server.output()}")
            time.sleep(0.02)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL)


class Routes:
    """Writes route entries the way deployer.routing.publish_route does, and waits until the gateway has them."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.redis = redis.Redis.from_url(os.environ["REDIS_URL"])
        self.names: set[str] = set()
        self.generation = int(time.time() * 1000)

    @staticmethod
    def unique(prefix: str = "gw") -> str:
        return f"{prefix}_{uuid.uuid4().hex[:8]}"

    def entry(self, name: str, versions, token: str | None = None, **fields) -> dict:
        """versions: [(number, weight, [instance dicts])]; the token (`token-of-<name>` unless given) is sealed
        with the route key the gateway reads (the same FERRY_VAR_DIR), as deployer.routing.route_entry does.
        A plain dict, not a RouteEntry: the gateway must read the JSON (contracts/routes.py) whoever wrote it."""
        self.generation += 1
        token = f"token-of-{name}" if token is None else token
        entry = {
            "service": name, "cluster": "local", **sealing.token_fields(sealing.route_key(), token, "local", name),
            "project": 1, "running": True, "timeout_ms": 5000,
            "max_queue_size": 64, "instance_concurrency": 0, "scale_to_zero": False, "mirror": None, "group": "",
            "group_weight": 100, "traffic_state": "standalone", "generation": self.generation,
            "versions": [{"number": n, "weight": w, "instances": list(i)} for n, w, i in versions],
        }
        entry.update(fields)
        return entry

    def publish(self, entry: dict, wait: bool = True) -> dict:
        name = entry["service"]
        self.names.add(name)
        self.redis.hset(ROUTES_KEY, name, json.dumps(entry))
        self.redis.publish(CHANGED_CHANNEL, name)
        if wait:
            self.wait_applied(name, entry["generation"])
        return entry

    def put(self, name: str, versions, **fields) -> dict:
        return self.publish(self.entry(name, versions, **fields))

    def wait_applied(self, name: str, generation, timeout: float = 10.0) -> None:
        url = f"{self.gateway.url}/api/v1/servicediscovery/upstreams/{name}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if json.loads(response.read()).get("generation") == generation:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the gateway did not apply generation {generation} of {name}")
            time.sleep(0.01)

    def remove_all(self) -> None:
        for name in self.names:
            self.redis.hdel(ROUTES_KEY, name)
            self.redis.publish(CHANGED_CHANNEL, name)


@pytest.fixture
def routes(gateway):
    table = Routes(gateway)
    yield table
    table.remove_all()


def call(gateway: Gateway, path: str, *, body: bytes = b"{}", headers: dict | None = None, method: str = "POST",
         timeout: float = 10):
    """(status, headers, body) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=timeout)
    try:
        connection.request(method, path, body=body if method != "GET" else None, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def load(port: int, path: str, *, requests: int | None = None, seconds: float | None = None, threads: int = 4,
         headers: dict | None = None, body: bytes = b'{"instances": [[1, 2, 3, 4]]}', stop_event=None) -> Counter:
    """Keep-alive load from `threads` connections: `requests` in all, or for `seconds`. Counter of
    (status, instance or version) -> count."""
    results: Counter = Counter()
    lock = threading.Lock()
    remaining = [requests if requests is not None else 10**9]
    deadline = time.monotonic() + (seconds if seconds is not None else 600)

    def worker():
        local: Counter = Counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while time.monotonic() < deadline and not (stop_event and stop_event.is_set()):
                with lock:
                    if remaining[0] <= 0:
                        break
                    remaining[0] -= 1
                connection.request("POST", path, body=body, headers=headers or {})
                response = connection.getresponse()
                response.read()
                local[(response.status, response.getheader("x-instance") or response.getheader("ferry-version"))] += 1
        finally:
            connection.close()
            with lock:
                results.update(local)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return results


def statuses(results: Counter) -> Counter:
    out: Counter = Counter()
    for (status, _), count in results.items():
        out[status] += count
    return out


def by_instance(results: Counter) -> Counter:
    out: Counter = Counter()
    for (_, instance), count in results.items():
        out[instance] += count
    return out


def md5hex(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324


@pytest.fixture(scope="session")
def eas_python(tmp_path_factory) -> Path:
    """The python of a venv holding only eas-prediction (eas_client_requirements.txt), made once and kept inside
    the project's venv (keyed by the requirements' hash), so later runs start at once."""
    requirements = HERE / "eas_client_requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    in_venv = sys.prefix != sys.base_prefix
    home = Path(sys.prefix) / "ferry-test-clients" if in_venv else tmp_path_factory.mktemp("clients")
    venv = home / f"eas-prediction-{digest}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        building = home / f".building-{os.getpid()}"
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(building)], check=True, timeout=120)
        subprocess.run([building / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check",
                        "--quiet", "-r", str(requirements)], check=True, timeout=600)
        (building / ".complete").write_text(digest)
        try:
            building.rename(venv)  # atomic: a concurrent run that finished first keeps its own
        except OSError:
            subprocess.run(["rm", "-rf", str(building)], check=False)
    return python


def eas_sdk(python: Path, mode: str, endpoint: str, service: str, token: str, body: str, count: int = 1,
            tz: str = "UTC"):
    """Runs eas_client.py in time zone `tz`: the list of answers, or {"error": [status, message]}. Checks that
    the SDK really ran in that zone (an unknown TZ would silently be UTC)."""
    done = subprocess.run([str(python), str(HERE / "eas_client.py"), mode, endpoint, service, token, body,
                           str(count)], capture_output=True, text=True, timeout=120, env=dict(os.environ, TZ=tz))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = datetime.now(ZoneInfo(tz)).utcoffset().total_seconds()
    assert result.pop("utc_offset") == expected, f"the SDK did not run in {tz}"
    return result.get("answers", result)


def run_coroutine(coroutine):
    """asyncio.run in a thread of its own: a test that runs after Playwright's sync API (the console's tests)
    finds an event loop running in the main thread, where asyncio.run refuses to start."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as error:  # noqa: BLE001 -- raised again in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
