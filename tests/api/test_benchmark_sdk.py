"""EAS's benchmark tasks driven by the official SDK, end to end: a real model server behind a real gateway, a real
Celery worker on the `benchmark` queue running the load, the SDK (signed with an AccessKey) creating, reading,
updating, starting, stopping and deleting tasks. The report's counts are checked against the gateway's own."""

import json
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import redis
import requests
from alibabacloud_eas20210701 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from config.celery import app
from deployer.benchmarks import sweep
from processors.demo import IRIS_SAMPLE, demo_service_files
from services.models import BenchmarkTask, Project, Service
from services.selectors import service_token
from services.writes import access_key_create, service_create
from tests.agent.kit import REPO, wait_for
from tests.e2e.conftest import converge, demo_models, local_cluster  # noqa: F401 -- fixtures
from tests.gateway.conftest import gateway  # noqa: F401 -- fixture: a real gateway process
from tests.harness.process import stop

from .conftest import close_sdk_connections, make_member, sdk_with_access_key

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
IRIS_BODY = {"instances": [IRIS_SAMPLE]}


def start_bencher(local_cluster, gateway, log_dir) -> subprocess.Popen:  # noqa: F811
    """The Procfile's `bencher`: a worker consuming only the benchmark queue, aimed at the test's gateway."""
    with open(log_dir / "bencher.log", "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "benchmark", "--pool", "threads",
             "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"bencher-{time.monotonic_ns()}@%h", "--loglevel", "INFO"],
            cwd=REPO, env=local_cluster.env(FERRY_GATEWAY_URL=gateway.url), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)


def answered_200(gateway, service: str) -> int:  # noqa: F811
    pattern = re.compile(r'^ferry_gateway_requests_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$', re.M)
    total = 0
    for match in pattern.finditer(gateway.metrics()):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("service") == service and labels.get("code") == "200":
            total += int(float(match["value"]))
    return total


def refused(call, *args) -> ClientException:
    with pytest.raises(ClientException) as error:
        call(*args)
    return error.value


def config(service: str, token: str | None = None, **base) -> str:
    named = {"serviceName": service, **({"requestToken": token} if token is not None else {})}
    return json.dumps({"service": named,
                       "base": base, "data": {"json": IRIS_BODY}, "http": {"path": f"/v1/models/{service}:predict"},
                       "optional": {"maxRt": 5000}})


def describe(sdk, name: str):
    return sdk.describe_benchmark_task("local", name).body


@pytest.fixture
def broker():
    """Once the test says so, tasks go to the real broker for the bencher to take (not inline); what this test
    queued is removed after."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = {queue: set(client.lrange(queue, 0, -1)) for queue in ("benchmark", "celery")}
    try:
        yield client
    finally:
        app.conf.task_always_eager = True
        for queue, kept in before.items():
            for raw in client.lrange(queue, 0, -1):
                if raw not in kept:
                    client.lrem(queue, 0, raw)


@pytest.fixture
def sdk(live_server):
    alice = make_member("alice", "team_a")
    key, secret = access_key_create(user=alice, description="sdk")
    yield sdk_with_access_key(live_server.url, key.access_key_id, secret)
    close_sdk_connections()


def test_a_benchmark_task_runs_reports_stops_and_is_bounded(local_cluster, demo_models, gateway, sdk,  # noqa: F811
                                                            broker, tmp_path):
    bencher = start_bencher(local_cluster, gateway, tmp_path)
    document = next(f for f in demo_service_files(demo_models) if f["name"] == "demo_iris")
    try:
        with override_settings(FERRY_GATEWAY_URL=gateway.url):
            iris = service_create(actor=None, project=Project.objects.get(name="team_a"), document=document)
            make_member("bob", "team_b")
            service_create(actor=None, project=Project.objects.get(name="team_b"),
                           document={**document, "name": "bobs_iris"})
            converge(iris, lambda s: s.phase == "Running", what="demo_iris to run")
            wait_for(lambda: requests.get(f"{gateway.url}/api/v1/servicediscovery/upstreams/demo_iris",
                                          timeout=5).status_code == 200, timeout=30, what="the route")
            app.conf.task_always_eager = False  # from here on the bencher runs the tasks (the fetches ran inline)
            _runs_and_reports(sdk, gateway)
            _bounds_and_isolation(sdk)
            _update_start_stop_delete(sdk)
            _lost_worker_is_swept(sdk, bencher)
    finally:
        stop(bencher, signal.SIGTERM)


def _runs_and_reports(sdk, gateway):  # noqa: F811
    before = answered_200(gateway, "demo_iris")
    token = service_token(Service.objects.get(name="demo_iris"))  # EAS's config carries it: the right one passes
    created = sdk.create_benchmark_task(m.CreateBenchmarkTaskRequest(
        body=config("demo_iris", token, duration=4, qps=25, concurrency=4))).body
    name = created.task_name
    assert name.startswith("benchmark-demo_iris-") and created.region == "local"
    # Progress shows while it runs: Describe says Running with a progress between 0 and 100.
    wait_for(lambda: describe(sdk, name).status == "Running" and re.match(r"\d+% done", describe(sdk, name).message),
             timeout=30, what="the task to run and show progress")
    running = describe(sdk, name)
    assert running.service_name == "demo_iris" and running.endpoint == gateway.url and running.token == ""
    wait_for(lambda: describe(sdk, name).status == "Completed", timeout=30, what="the task to complete")
    done = describe(sdk, name)
    assert "requests/s" in done.message and done.reason == "Completed"
    task = BenchmarkTask.objects.get(name=name)
    assert task.progress == 100 and "requestToken" not in task.config["service"]  # the token is never stored

    report = sdk.describe_benchmark_task_report("local", name, m.DescribeBenchmarkTaskReportRequest(
        report_type="RAW")).body
    data = report.data
    summary, rows = data["Summary"], data["Rows"]
    assert summary["Requests"] == sum(row["Requests"] for row in rows)
    assert summary["Requests"] == answered_200(gateway, "demo_iris") - before, "the gateway counts every request"
    assert summary["Errors"] == 0 and summary["StatusCodes"] == {"200": summary["Requests"]}
    assert 0.6 * 4 * 25 <= summary["Requests"] <= 4 * 25, summary  # open loop at 25/s for 4 s, no more
    assert 4 <= len(rows) <= 5 and max(row["Qps"] for row in rows) <= 30
    latency = summary["LatencyMs"]
    assert 0 < latency["P50"] <= latency["P90"] <= latency["P99"] <= latency["Max"]
    assert all(row["P50"] <= row["P90"] <= row["P99"] for row in rows)
    assert report.report_url.endswith(f"/benchmarks/local/{name}/")

    listed = sdk.list_benchmark_task(m.ListBenchmarkTaskRequest(service_name="demo_iris")).body
    assert [task.task_name for task in listed.tasks] == [name] and listed.total_count == 1
    assert listed.tasks[0].status == "Completed"
    assert sdk.list_benchmark_task(m.ListBenchmarkTaskRequest(service_name="other")).body.total_count == 0


def _bounds_and_isolation(sdk):
    error = refused(sdk.create_benchmark_task, m.CreateBenchmarkTaskRequest(
        body=config("demo_iris", duration=100000, qps=100000, concurrency=100000)))
    assert error.status_code == 400
    for field in ("base.duration", "base.qps", "base.concurrency"):
        assert field in error.message, error.message
    error = refused(sdk.create_benchmark_task, m.CreateBenchmarkTaskRequest(
        body=json.dumps({"service": {"serviceName": "demo_iris"}, "base": {"mode": "auto", "rate": 3}})))
    assert error.status_code == 400 and "base.mode" in error.message and "base.rate" in error.message
    error = refused(sdk.create_benchmark_task, m.CreateBenchmarkTaskRequest(
        body=config("demo_iris", "not-its-token", duration=1)))
    assert error.status_code == 400 and "service.requestToken" in error.message, error.message
    # Bob's service is not alice's to see, let alone load.
    error = refused(sdk.create_benchmark_task, m.CreateBenchmarkTaskRequest(body=config("bobs_iris", duration=1)))
    assert (error.status_code, error.code) == (404, "ServiceNotFound")
    assert refused(sdk.describe_benchmark_task, "local", "benchmark-bobs_iris-0000").status_code == 404
    assert BenchmarkTask.objects.filter(service__name="bobs_iris").count() == 0


def _update_start_stop_delete(sdk):
    name = sdk.list_benchmark_task(m.ListBenchmarkTaskRequest()).body.tasks[0].task_name
    sdk.update_benchmark_task("local", name, m.UpdateBenchmarkTaskRequest(
        body=config("demo_iris", duration=60, concurrency=2)))  # closed loop, long
    assert BenchmarkTask.objects.get(name=name).config["base"] == {"duration": 60, "concurrency": 2}
    sdk.start_benchmark_task("local", name)
    wait_for(lambda: describe(sdk, name).status == "Running", timeout=30, what="the task to run again")
    assert refused(sdk.update_benchmark_task, "local", name, m.UpdateBenchmarkTaskRequest(
        body=config("demo_iris", duration=5))).status_code == 409
    sdk.stop_benchmark_task("local", name)
    asked = time.monotonic()
    wait_for(lambda: describe(sdk, name).status == "Stopped", timeout=10, what="the task to stop")
    assert time.monotonic() - asked < 5, "Stop takes effect within a second or two"
    assert describe(sdk, name).reason == "StoppedByUser" and BenchmarkTask.objects.get(name=name).progress < 50
    assert refused(sdk.stop_benchmark_task, "local", name).status_code == 409
    sdk.delete_benchmark_task("local", name)
    assert refused(sdk.describe_benchmark_task, "local", name).status_code == 404


def _lost_worker_is_swept(sdk, bencher):
    name = sdk.create_benchmark_task(m.CreateBenchmarkTaskRequest(
        body=config("demo_iris", duration=60, qps=5))).body.task_name
    wait_for(lambda: describe(sdk, name).status == "Running", timeout=30, what="the task to run")
    stop(bencher, signal.SIGKILL)
    assert sweep() == 0  # its heartbeat is fresh: not yet
    later = timezone.now() + timedelta(seconds=60)
    assert sweep(now=later) == 1
    lost = describe(sdk, name)
    assert (lost.status, lost.reason) == ("Error", "WorkerLost") and "start it again" in lost.message
