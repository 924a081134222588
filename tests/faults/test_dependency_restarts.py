"""Redis restarted under load, with every process of `make run` that uses it running: the node agent, the
gateway, a Celery worker, beat and the autoscaler, all on a Redis of the test's own (tests/faults/own_redis.py).
Redis is killed with SIGKILL and comes back on the same port without its data. What must hold:
- the data plane loses nothing: not one request fails, before, during or after;
- nobody has to be restarted: every process is still the one started, and reconnected by itself;
- the routes come back: the beat sweep sees a Redis it did not publish to (deployer.routing.republish_if_lost)
  and republishes every service, and a later change (scaled to 3) travels agent -> worker -> gateway again;
- no service state is lost, no instance restarted, duplicated or orphaned.

PostgreSQL is not restarted here: the session's server is shared by every test of the run.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from deployer.models import LocalInstance
from deployer.routing import ROUTES_KEY
from processors.demo import IRIS_SAMPLE
from services.models import Service
from services.selectors import service_token
from tests.agent.kit import wait_for
from tests.faults.own_redis import (  # noqa: F401 -- fixtures
    scale_to_three_and_reach_the_third,
    cluster, failures, fully_published, instance_marks, instances, kill_redis,
    load_through, own_gateway, own_redis, redis_client, restart_redis, serve_for, start_autoscaler,
    start_beat, start_worker, stop_all,
)
from tests.faults.test_instance_crash import iris_with

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
IRIS_BODY = json.dumps({"instances": [IRIS_SAMPLE]}).encode()
PATH = "/api/predict/demo_iris"
SWEEP_BOUND = 60  # s: one beat period (15 s) plus Celery's reconnection backoff, on a busy 2-core machine


def published_ports(server, name: str) -> set[int]:
    entry = json.loads(redis_client(server).hget(ROUTES_KEY, name))
    return {int(i["address"].rpartition(":")[2]) for v in entry["versions"] for i in v["instances"]}


def test_every_process_rides_out_a_redis_restart_and_the_routes_come_back(cluster, own_redis, own_gateway,
                                                                         tmp_path):
    iris = iris_with(2, cluster, own_gateway)
    before = instances(iris)
    ports = {r.port for r in LocalInstance.objects.filter(service=iris)}
    processes = [start_worker(cluster, tmp_path, "steady"), start_beat(cluster, tmp_path),
                 start_autoscaler(cluster, tmp_path)]
    try:
        wait_for(lambda: fully_published(own_redis, "demo_iris"), timeout=SWEEP_BOUND,
                 what="the sweep's first complete publish")
        with load_through(own_gateway, service_token(iris), IRIS_BODY, PATH) as load:
            wait_for(lambda: len(load.answers) >= 200, timeout=30, what="traffic through the gateway")
            kill_redis(own_redis)
            serve_for(load, 1.0)
            restart_redis(own_redis)
            back = time.monotonic()
            wait_for(lambda: fully_published(own_redis, "demo_iris"), timeout=SWEEP_BOUND,
                     what="the sweep to republish the routes to the restarted Redis")
            republished_after = time.monotonic() - back
            assert published_ports(own_redis, "demo_iris") == ports
            served_restart = len(load.since(back))

            changed = time.monotonic()
            ready_at, routed_at = scale_to_three_and_reach_the_third(own_gateway, iris, before)
            routed_after_ready = routed_at - ready_at
            serve_for(load, 1.0)
        print(f"redis restart: {len(load.answers)} answers ({dict(load.statuses())}), {len(load.errors)} connection "
              f"errors, {served_restart} from Redis's return to the republish; routes republished "
              f"{republished_after:.1f} s after Redis came back; scaled to 3: ready after "
              f"{ready_at - changed:.1f} s, routed {routed_after_ready:.2f} s later", flush=True)
        assert not failures(load), failures(load)[:10]
        assert all(p.poll() is None for p in processes) and own_gateway.popen.poll() is None
        assert cluster.agents[-1].running() and len(cluster.agents) == 1
        wait_for(lambda: Service.objects.get(pk=iris.pk).phase == "Running", timeout=SWEEP_BOUND,
                 what="the service to be Running with 3 instances")
    finally:
        stop_all(*processes)
    after = instances(iris)
    assert len(after) == 3 and {name: after[name] for name in before} == before
    assert instance_marks(cluster) == sorted(after)  # one process per instance: no duplicate, no orphan
