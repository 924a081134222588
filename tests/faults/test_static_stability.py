"""Static stability: the data plane does not need the control plane, nor Redis, to go on serving.

A real node agent and demo_iris model servers, the real gateway, a Celery worker, and a Redis of the test's
own (tests/faults/own_redis.py). Under steady load through the gateway, Redis and the worker are killed with
SIGKILL. What must hold:
- not one request fails while they are down: the gateway serves the table it has in memory, the instances
  go on running (same pids);
- Redis comes back empty (no dump) and a new worker starts: the gateway does not take the empty hash for an
  empty table (gateway/sync.py), and a route change made afterwards reaches it: scaled to 3, the third
  instance gets traffic;
- no instance was restarted across all of it: same names, pids and restart counts.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from deployer.models import LocalInstance
from processors.demo import IRIS_SAMPLE
from services.selectors import service_token
from tests.agent.kit import wait_for
from tests.faults.own_redis import (  # noqa: F401 -- fixtures
    scale_to_three_and_reach_the_third,
    alive, cluster, failures, gateway_resubscribed, instance_marks, instances,
    kill_redis, load_through, own_gateway, own_redis, restart_redis, routed_ports, serve_for, start_worker,
)
from tests.faults.test_instance_crash import iris_with
from tests.harness.process import stop

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
IRIS_BODY = json.dumps({"instances": [IRIS_SAMPLE]}).encode()
PATH = "/api/predict/demo_iris"
DOWN_FOR = 4.0  # seconds of load with Redis and the worker dead


def test_the_gateway_serves_on_with_redis_and_the_worker_killed(cluster, own_redis, own_gateway, tmp_path):
    iris = iris_with(2, cluster, own_gateway)
    before = instances(iris)
    worker = start_worker(cluster, tmp_path, "first")
    with load_through(own_gateway, service_token(iris), IRIS_BODY, PATH) as load:
        wait_for(lambda: len(load.answers) >= 200, timeout=30, what="traffic through the gateway")
        kill_redis(own_redis)
        stop(worker, signal.SIGKILL)
        served_down = serve_for(load, DOWN_FOR)
        assert served_down and not failures(load), failures(load)[:10]
        assert instances(iris) == before and alive(pid for pid, _ in before.values())

        restart_redis(own_redis)
        back = time.monotonic()
        # The gateway reloads the whole hash as it reconnects: an empty one must not blank its table.
        wait_for(lambda: gateway_resubscribed(own_redis), timeout=30, what="the gateway to reconnect to Redis")
        served_empty = serve_for(load, 1.0)
        assert served_empty and not failures(load), failures(load)[:10]
        assert routed_ports(own_gateway, "demo_iris") == {r.port for r in LocalInstance.objects.filter(service=iris)}
        worker = start_worker(cluster, tmp_path, "second")
        # The agent starts the third instance; the worker, told by the agent, publishes it once ready.
        ready_at, routed_at = scale_to_three_and_reach_the_third(own_gateway, iris, before)
        applied_after, routed_after_ready = routed_at - back, routed_at - ready_at
        serve_for(load, 1.0)
    stop(worker, signal.SIGTERM)
    print(f"static stability: {len(load.answers)} answers ({dict(load.statuses())}), {len(load.errors)} "
          f"connection errors; {len(served_down)} served in {DOWN_FOR:g} s with Redis and the worker dead; "
          f"{len(served_empty)} in 1 s after the gateway reloaded the empty Redis; the third instance routed "
          f"{applied_after:.1f} s after Redis came back ({routed_after_ready:.2f} s after it was ready)", flush=True)
    assert not failures(load), failures(load)[:10]
    after = instances(iris)
    assert {name: after[name] for name in before} == before  # no restart: same names, pids, restart counts
    assert instance_marks(cluster) == sorted(after)  # one process per instance: no duplicate, no orphan
