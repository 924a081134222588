"""A request that arrives while a service's last instance drains after a scale to zero: real node agent, real
demo_iris model servers, the real gateway (whose activator holds the request and asks for a wake-up) and a
Celery worker running the wake-up and the reconciles.

The wake-up raises the desired count back to 1 for the slot the draining instance still holds. The agent must
start a new process at once instead of waiting for the draining one to exit. To make "waiting for the exit"
unmistakable, the draining process is frozen (SIGSTOP) before its SIGTERM: it cannot exit before the agent's
SIGKILL at the end of its 30 s grace period, so an agent that waited would hold the request that long.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from deployer.agent.launch import LaunchSpec
from deployer.models import LocalInstance
from deployer.reconcile import reconcile
from processors.demo import IRIS_SAMPLE, demo_service_files
from services.models import Project, Service
from services.selectors import service_token
from services.writes import service_create
from tests.agent.kit import wait_for
from tests.e2e.conftest import converge
from tests.e2e.control_plane import start_worker
from tests.faults.test_instance_crash import routed_ports
from tests.harness.process import stop

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
IRIS_BODY = json.dumps({"instances": [IRIS_SAMPLE]}).encode()
PATH = "/api/predict/demo_iris"
# An agent that waited for the frozen instance's exit could not answer before its grace period (30 s) ends.
# A cold start takes well under a second on a quiet machine and ~10 s on a loaded one; the sharper check is
# that the old process is still alive (frozen, before its SIGKILL) when the answer arrives.
MARGIN_SECONDS = 2.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # a stopped process is alive too
    except ProcessLookupError:
        return False
    return True


def sigterm_sent(log_path: str, pid: int) -> bool:
    return f"Sent SIGTERM to instance demo-iris-v1-0 (pid {pid})" in Path(log_path).read_text(errors="replace")


def iris_at_one(demo_models, gateway) -> Service:
    document = next(f for f in demo_service_files(demo_models) if f["name"] == "demo_iris")
    document = {**document, "autoscaler": {"min": 0, "max": 1, "scaleStrategies": [{"metricName": "qps",
                                                                                    "threshold": 10}]}}
    iris = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
    Service.objects.filter(pk=iris.pk).update(autoscaled_instances=1)
    iris = converge(iris, lambda s: s.phase == "Running" and s.instances.filter(ready=True).count() == 1,
                    timeout=120, what="demo_iris with one ready instance")
    port = iris.instances.get().port
    wait_for(lambda: routed_ports(gateway, "demo_iris") == {port}, timeout=30, what="the gateway to route it")
    return iris


def test_a_request_during_the_last_instance_drain_starts_a_new_one_at_once(local_cluster, demo_models, gateway,
                                                                          tmp_path):
    iris = iris_at_one(demo_models, gateway)
    old = LocalInstance.objects.get(service=iris)
    worker = start_worker(local_cluster, tmp_path)
    log = tmp_path / "worker.log"
    try:
        wait_for(lambda: log.exists() and " ready." in log.read_text(), timeout=60, what="the Celery worker")
        Service.objects.filter(pk=iris.pk).update(autoscaled_instances=0)  # the autoscaler's scale to zero
        reconcile(iris.pk)
        wait_for(lambda: LocalInstance.objects.get(pk=old.pk).state == "Terminating", timeout=10,
                 what="the last instance to drain")
        os.kill(old.pid, signal.SIGSTOP)
        wait_for(lambda: sigterm_sent(old.log_path, old.pid), timeout=10, what="the agent's SIGTERM")
        wait_for(lambda: routed_ports(gateway, "demo_iris") == set(), timeout=30,
                 what="the gateway to stop routing to the draining instance")

        began = time.monotonic()
        answer = requests.post(f"{gateway.url}{PATH}", data=IRIS_BODY,
                               headers={"Authorization": service_token(iris)}, timeout=60)
        took = time.monotonic() - began
        print(f"\na request during the last instance's drain was answered in {took:.2f} s", flush=True)
        assert (answer.status_code, answer.json()) == (200, {"predictions": [0]}), answer.text
        assert took < LaunchSpec.from_json(old.launch).grace_period_seconds - MARGIN_SECONDS, took
        assert alive(old.pid), "the draining process should still be frozen in its grace period"
        now = LocalInstance.objects.get(service=iris)
        assert now.pid != old.pid and now.desired == "running", (now.pid, now.state)
        assert Service.objects.get(pk=iris.pk).events.filter(reason="Activated").exists()
    finally:
        if alive(old.pid):
            os.kill(old.pid, signal.SIGCONT)  # its pending SIGTERM ends it now
        stop(worker, signal.SIGTERM)
    wait_for(lambda: not alive(old.pid), timeout=30, what="the drained process to exit")
    row = local_cluster.wait_running(now.name, timeout=30)
    assert row.pid == now.pid, "the new process is unaffected by the old one's exit"
