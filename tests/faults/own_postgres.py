"""A local cluster on a PostgreSQL (and a Redis) of its own, for tests that kill and restart PostgreSQL: the
session's server is shared by every test of the run, so it must never be the one killed.

Nothing of this test process's Django touches that database: the processes started here (migrate, bootstrap,
node agent, worker, beat, autoscaler, the gunicorn web server) get its DATABASE_URL, the test deploys and
scales through the web server's EAS API as a user would, and reads the instance rows with plain SQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psycopg
import pytest
import requests

from deployer.models import LocalInstance
from tests.agent.kit import PY, REPO, wait_for
from tests.e2e.control_plane import _start
from tests.faults.own_redis import OwnRedisCluster
from tests.harness.postgres import PostgresServer
from tests.harness.process import free_port, stop

MIGRATE_TIMEOUT = 300  # s: the whole schema from scratch, on a busy 2-core machine


class OwnDatabaseCluster(OwnRedisCluster):
    def __init__(self, tmp_path, redis_url: str, database_url: str):
        super().__init__(tmp_path, redis_url)
        self.database_url = database_url

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(DATABASE_URL=self.database_url, **extra)

    def manage(self, *args: str) -> None:
        done = subprocess.run([PY, "manage.py", *args], cwd=REPO, env=self.env(), capture_output=True, text=True,
                              timeout=MIGRATE_TIMEOUT)
        assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"

    def admin_token(self) -> str:
        return (self.var_dir / "admin-token").read_text().strip()


@pytest.fixture
def own_postgres():
    server = PostgresServer()
    server.start()
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture
def db_cluster(tmp_path, own_redis, own_postgres, demo_models):
    """Migrated and bootstrapped as `make run` does before its processes start, then a node agent."""
    cluster = OwnDatabaseCluster(tmp_path, own_redis.url, own_postgres.url)
    cluster.demo_models = demo_models
    cluster.manage("migrate", "--no-input")
    cluster.manage("ferry_bootstrap")
    cluster.start_agent()
    yield cluster
    leftovers = cluster.clean_up()
    assert not leftovers, f"instance processes outlived the agent: {leftovers}"


def kill_postgres(server: PostgresServer) -> None:
    """SIGKILL to the postmaster and every backend (one process group): a crash, no shutdown of any kind."""
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


def start_web(cluster: OwnDatabaseCluster, tmp_path) -> tuple[subprocess.Popen, str]:
    """gunicorn as the Procfile runs it (config/gunicorn.conf.py); returns it and its base URL."""
    port = free_port()
    web = _start(cluster, tmp_path / "web.log", [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py",
                                                 "config.wsgi", "--bind", f"127.0.0.1:{port}"])
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: status_of(f"{base}/readyz") == 200, timeout=60, what="the web server to be ready")
    return web, base


def status_of(url: str) -> int | None:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return None


class Api:
    """The EAS API of one service over HTTP, with the admin's token, as the SDK or `ferry` calls it."""

    def __init__(self, base: str, token: str, name: str):
        self.base = base
        self.url = f"{base}/api/v2/services/local/{name}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def create(self, document: dict) -> None:
        answer = self.session.post(f"{self.base}/api/v2/services", json=document, timeout=30)
        assert answer.status_code in (200, 202), answer.text

    def describe(self) -> dict:
        answer = self.session.get(self.url, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def scale(self, instances: int) -> None:
        """One call, not retried: once PostgreSQL is back the first write must go through."""
        answer = self.session.put(self.url, json={"metadata": {"instance": instances}}, timeout=30)
        assert answer.status_code in (200, 202), answer.text

    def wait_running(self, instances: int, timeout: float = 120) -> dict:
        def running():
            body = self.describe()
            whole = body["Status"] == "Running" and body["RunningInstance"] == body["TotalInstance"] == instances
            return body if whole else None

        return wait_for(running, timeout=timeout, what=f"the service to be Running with {instances} instances")


def instance_rows(server: PostgresServer) -> dict[str, tuple[int, int, int]]:
    """name -> (pid, port, restart count) of every LocalInstance row: the agent's work list, read with SQL."""
    with psycopg.connect(server.url, connect_timeout=5) as db:
        rows = db.execute(f"SELECT name, pid, port, restart_count FROM {LocalInstance._meta.db_table}").fetchall()
    return {name: (pid, port, restarts) for name, pid, port, restarts in rows}


def stop_all(*processes: subprocess.Popen) -> None:
    for process in processes:
        stop(process, signal.SIGTERM)
