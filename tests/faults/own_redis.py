"""A local cluster on a Redis of its own, for tests that kill and restart Redis: the session's Redis is shared
by every test of the run, so it must never be the one killed.

Every process started here (agent, worker, beat, autoscaler, gateway) and this test process's own publishes
use that Redis, as the processes of `make run` share the embedded one. The restarted Redis keeps no data,
like a `make run` Redis killed before its first dump: the hardest case for the routing table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import redis
import requests
from django.test import override_settings

from deployer.models import LocalInstance
from deployer.routing import CHANGED_CHANNEL, COMPLETE_KEY, ROUTES_KEY
from tests.agent.kit import LocalCluster, wait_for
from tests.e2e.control_plane import LoadGenerator, _start
from tests.gateway.conftest import start_gateway
from tests.harness.process import stop
from tests.harness.redis import RedisServer

CLIENTS = 4


class OwnRedisCluster(LocalCluster):
    def __init__(self, tmp_path, redis_url: str):
        super().__init__(tmp_path, service=None)
        self.redis_url = redis_url

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(REDIS_URL=self.redis_url, CELERY_BROKER_URL=self.redis_url, **extra)


@pytest.fixture
def own_redis():
    server = RedisServer()
    server.start()
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path, own_redis, demo_models):
    cluster = OwnRedisCluster(tmp_path, own_redis.url)
    cluster.demo_models = demo_models
    with override_settings(VAR_DIR=cluster.var_dir, REDIS_URL=own_redis.url):
        cluster.start_agent()
        yield cluster
    leftovers = cluster.clean_up()
    assert not leftovers, f"instance processes outlived the agent: {leftovers}"


@pytest.fixture
def own_gateway(tmp_path, own_redis):
    gateway = start_gateway(tmp_path, REDIS_URL=own_redis.url)
    yield gateway
    gateway.stop()


def kill_redis(server: RedisServer) -> None:
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


def restart_redis(server: RedisServer) -> None:
    """The same port, no data: what a Redis without a dump (or killed before its first one) comes back as."""
    server.start()
    server.wait_ready()


def redis_client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=2)


def run_id(server: RedisServer) -> str:
    return redis_client(server).info("server")["run_id"]


def gateway_resubscribed(server: RedisServer) -> bool:
    """The gateway reconnected: it subscribes to the change channel, then loads the whole hash at once."""
    return dict(redis_client(server).pubsub_numsub(CHANGED_CHANNEL)).get(CHANGED_CHANNEL.encode(), 0) >= 1


def fully_published(server: RedisServer, name: str) -> bool:
    """The sweep wrote the whole table to this very Redis (its mark names this server's run)."""
    client = redis_client(server)
    mark = client.get(COMPLETE_KEY)
    return mark is not None and mark.decode() == run_id(server) and client.hexists(ROUTES_KEY, name)


def start_worker(cluster: OwnRedisCluster, tmp_path, name: str) -> subprocess.Popen:
    log = tmp_path / f"worker-{name}.log"
    worker = _start(cluster, log, [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "celery,fetch", "--pool", "solo",
                                   "--without-gossip", "--without-mingle", "--without-heartbeat",
                                   "-n", f"{name}-{os.getpid()}@%h", "--loglevel", "INFO"])
    wait_for(lambda: log.exists() and " ready." in log.read_text(), timeout=60, what="the Celery worker")
    return worker


def start_beat(cluster: OwnRedisCluster, tmp_path) -> subprocess.Popen:
    """As `make run` starts it: the reconcile sweep every 15 s."""
    return _start(cluster, tmp_path / "beat.log", [sys.executable, "-m", "celery", "-A", "config", "beat",
                                                   "--schedule", str(tmp_path / "celerybeat-schedule"),
                                                   "--loglevel", "INFO"])


def start_autoscaler(cluster: OwnRedisCluster, tmp_path) -> subprocess.Popen:
    return _start(cluster, tmp_path / "autoscaler.log", [sys.executable, "manage.py", "runautoscaler"])


def stop_all(*processes: subprocess.Popen) -> None:
    for process in processes:
        stop(process, signal.SIGTERM)


def routed_ports(gateway, name: str) -> set[int]:
    answer = requests.get(f"{gateway.url}/api/v1/servicediscovery/upstreams/{name}", timeout=5)
    return {item["port"] for item in answer.json()["endpoints"]["items"]} if answer.status_code == 200 else set()


def instances(service) -> dict[str, tuple[int, int]]:
    """name -> (pid, restart count): what must not change for an instance that was never restarted."""
    return {row.name: (row.pid, row.restart_count) for row in LocalInstance.objects.filter(service=service)}


def alive(pids) -> bool:
    return all(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


def has_gateway_connection(port: int) -> bool:
    """The gateway holds a keep-alive connection to this instance: it sent it requests."""
    return any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
               for c in psutil.net_connections(kind="tcp4"))


def load_through(gateway, token: str, body: bytes, path: str) -> LoadGenerator:
    return LoadGenerator(gateway.port, path, {"Authorization": token}, body=body, threads=CLIENTS)


def failures(load: LoadGenerator) -> list[str]:
    answers = [f"{a.status} sent {a.sent:.3f}" for a in load.answers[:] if a.status != 200]
    return answers + [f"connection error sent {sent:.3f}: {what}" for sent, what in load.errors]


def serve_for(load: LoadGenerator, seconds: float) -> list:
    """Lets the load run `seconds` more (polled, bounded) and returns the answers to requests sent meanwhile."""
    began = time.monotonic()
    wait_for(lambda: any(a.sent >= began + seconds for a in load.answers[-CLIENTS * 2:]), timeout=seconds + 30,
             what=f"{seconds:g} s of load")
    return [a for a in load.answers[:] if began <= a.sent < began + seconds]


def instance_marks(cluster: OwnRedisCluster) -> list[str]:
    """The instance name of every live process the agent started (one per instance: none twice, none extra)."""
    marks = []
    for process in cluster.processes():
        try:
            if process.pid == os.getpgid(process.pid):  # the leader of an instance's process group
                marks.append(process.environ().get("FERRY_INSTANCE"))
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return sorted(marks)



def scale_to_three_and_reach_the_third(gateway, service, before) -> tuple[float, float]:
    """Scales `service` to 3 and waits until an instance not in `before` is ready, routed by the gateway and
    sent traffic: the control plane whole again. Returns when the third became ready and when it was routed."""
    from services.writes import service_scale

    service_scale(actor=None, service=service, instances=3)
    third = wait_for(lambda: LocalInstance.objects.filter(service=service, ready=True).exclude(
        name__in=before).first(), timeout=90, what="a third ready instance")
    ready_at = time.monotonic()
    wait_for(lambda: third.port in routed_ports(gateway, service.name), timeout=60,
             what="the gateway to route the third instance")
    routed_at = time.monotonic()
    wait_for(lambda: has_gateway_connection(third.port), timeout=30, what="traffic to the third instance")
    return ready_at, routed_at
