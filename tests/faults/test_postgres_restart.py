"""PostgreSQL killed and restarted under load, with every process of `make run` that uses it running: the web
server (gunicorn), the node agent, a Celery worker, beat, the autoscaler and the gateway, on a PostgreSQL and a
Redis of the test's own (tests/faults/own_postgres.py). The postmaster and its backends are killed with SIGKILL,
stay down a few seconds, and come back on the same port and data dir (crash recovery). What must hold:
- the data plane never notices: not one request fails, before, during or after (the gateway needs no database);
- nobody has to be restarted: every process is still the one started, and reconnected by itself;
- the first write through the API afterwards goes through and is carried out (scaled to 3, then back to 2);
- meanwhile the API answers at once, in EAS's error shape, and /readyz 503;
- no service state is lost, no instance restarted, duplicated or orphaned: the same rows and pids as before,
  one process per row;
- no loop goes on failing once the database is back (a connection Django never dropped fails every tick), and
  no thread died.
"""

from __future__ import annotations

import json
import time

import psutil

from processors.demo import IRIS_SAMPLE, demo_service_files
from tests.agent.kit import wait_for
from tests.faults.own_postgres import (  # noqa: F401 -- fixtures
    Api, db_cluster, instance_rows, kill_postgres, own_postgres, start_web, status_of, stop_all,
)
from tests.faults.own_redis import (  # noqa: F401 -- fixtures
    failures, fully_published, has_gateway_connection, instance_marks, load_through, own_gateway, own_redis,
    serve_for, start_autoscaler, start_beat, start_worker,
)

IRIS_BODY = json.dumps({"instances": [IRIS_SAMPLE]}).encode()
PATH = "/api/predict/demo_iris"
DOWN_FOR = 5.0  # s of load with PostgreSQL dead
RECONNECT_BOUND = 60  # s: a beat period (15 s) or a web request, on a busy 2-core machine
KEPT = ("Status", "TotalInstance", "RunningInstance", "CurrentVersion", "LatestVersion", "AccessToken",
        "ServiceConfig", "LastRolledOutVersion")  # the service's state, the same after as before
QUIET_FOR = 5.0  # s after the round trip in which no process may log an error: 2 autoscaler ticks, 25 agent passes
TROUBLE = ("Traceback", "ERROR", "Could not", "Cannot")  # what Ferry's loops, Celery and gunicorn log on errors


def log_sizes(tmp_path) -> dict:
    return {path: path.stat().st_size for path in tmp_path.glob("*.log")}


def troubles_since(sizes: dict) -> dict[str, list[str]]:
    """Error lines written to each log since `sizes`: a loop that still fails once the database is back (a dead
    connection it never drops fails every tick) logs here."""
    found = {}
    for path, size in sizes.items():
        with open(path, "rb") as log:
            log.seek(size)
            lines = [line for line in log.read().decode(errors="replace").splitlines()
                     if any(word in line for word in TROUBLE)]
        if lines:
            found[path.name] = lines[:5]
    return found


def web_worker_pids(web) -> set[int]:
    return {child.pid for child in psutil.Process(web.pid).children()}


def thread_deaths(tmp_path) -> dict[str, list[str]]:
    """Threads that ended on an exception (Python prints "Exception in thread ..." and its traceback)."""
    return {path.name: [line for line in path.read_text(errors="replace").splitlines()
                        if line.startswith("Exception in thread")] for path in tmp_path.glob("*.log")}


def test_every_process_rides_out_a_postgres_restart(db_cluster, own_postgres, own_redis, own_gateway, tmp_path):
    web, base = start_web(db_cluster, tmp_path)
    processes = {"web": web, "worker": start_worker(db_cluster, tmp_path, "steady"),
                 "beat": start_beat(db_cluster, tmp_path), "autoscaler": start_autoscaler(db_cluster, tmp_path)}
    try:
        document = next(f for f in demo_service_files(db_cluster.demo_models) if f["name"] == "demo_iris")
        api = Api(base, db_cluster.admin_token(), "demo_iris")
        api.create({**document, "metadata": {**document["metadata"], "instance": 2}})
        described = api.wait_running(2)
        before = instance_rows(own_postgres)
        assert len(before) == 2
        web_workers = web_worker_pids(web)
        # As `make run` is once its first sweep ran: the gateway then holds a table it knows to be complete.
        wait_for(lambda: fully_published(own_redis, "demo_iris"), timeout=RECONNECT_BOUND,
                 what="the sweep's first complete publish")

        with load_through(own_gateway, described["AccessToken"], IRIS_BODY, PATH) as load:
            wait_for(lambda: len(load.answers) >= 200, timeout=60, what="traffic through the gateway")
            kill_postgres(own_postgres)
            # What a user of the API sees meanwhile: an answer at once, in EAS's error shape, not a hang.
            api_down = api.session.get(api.url, timeout=30)
            ready_down = status_of(f"{base}/readyz")
            served_down = serve_for(load, DOWN_FOR)
            own_postgres.restart()
            own_postgres.wait_ready()
            back = time.monotonic()
            wait_for(lambda: api.describe()["Status"] == "Running", timeout=RECONNECT_BOUND,
                     what="the API to answer again")
            api_after = time.monotonic() - back

            changed = time.monotonic()
            api.scale(3)
            api.wait_running(3)
            scaled = instance_rows(own_postgres)
            assert len(scaled) == 3 and scaled.keys() > before.keys(), scaled
            _, third_port, _ = next(row for name, row in scaled.items() if name not in before)
            wait_for(lambda: has_gateway_connection(third_port), timeout=60, what="traffic to the third instance")
            api.scale(2)
            described_after = api.wait_running(2)
            wait_for(lambda: instance_rows(own_postgres).keys() == before.keys(), timeout=60,
                     what="the third instance's row to go")
            round_trip = time.monotonic() - changed
            sizes = log_sizes(tmp_path)
            serve_for(load, QUIET_FOR)
        print(f"postgres restart: {len(load.answers)} answers ({dict(load.statuses())}), {len(load.errors)} "
              f"connection errors, {len(served_down)} served in {DOWN_FOR:g} s with PostgreSQL dead; the API "
              f"answered {api_down.status_code} {api_down.json().get('Code')} and /readyz {ready_down} while it was "
              f"down, and again {api_after:.1f} s after PostgreSQL was back; scale 2 -> 3 -> 2 took {round_trip:.1f} s",
              flush=True)
        assert not failures(load), failures(load)[:10]
        assert ready_down == 503 and api_down.status_code >= 500 and "Code" in api_down.json(), api_down.text
        dead = {name: p.returncode for name, p in processes.items() if p.poll() is not None}
        assert not dead, f"exited: {dead}"
        assert web_worker_pids(web) == web_workers  # gunicorn replaced no worker that crashed or hung
        assert {key: described_after[key] for key in KEPT} == {key: described[key] for key in KEPT}
        assert own_gateway.popen.poll() is None
        assert db_cluster.agents[-1].running() and len(db_cluster.agents) == 1
        assert not troubles_since(sizes), troubles_since(sizes)
        assert not any(thread_deaths(tmp_path).values()), thread_deaths(tmp_path)
    finally:
        stop_all(*processes.values())
    assert instance_rows(own_postgres) == before  # same names, pids, ports, restart counts: nothing restarted
    assert instance_marks(db_cluster) == sorted(before)  # one process per row: no duplicate, no orphan
