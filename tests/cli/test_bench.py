"""`ferry bench`: the installed CLI creating, following, reporting, stopping and deleting benchmark tasks against the
live API, with a real bencher worker, a real gateway and a real model server behind it."""

import json
import signal
import time

import pytest
import requests

from config.celery import app
from processors.demo import IRIS_SAMPLE
from services.models import BenchmarkTask, Project
from services.writes import service_create
from tests.api.test_benchmark_sdk import broker, start_bencher  # noqa: F401 -- a fixture and a helper
from tests.agent.kit import wait_for
from tests.e2e.conftest import converge
from tests.gateway.conftest import gateway  # noqa: F401 -- fixture: a real gateway process
from tests.harness.process import stop

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_bench_create_follow_report_stop_delete(ferry, local_cluster, gateway, broker, alice, iris_file,  # noqa: F811
                                               tmp_path):
    target = service_create(actor=alice, project=Project.objects.get(name="team_a"),
                            document={**iris_file, "name": "target"})
    converge(target, lambda s: s.phase == "Running", what="the target to run")
    wait_for(lambda: requests.get(f"{gateway.url}/api/v1/servicediscovery/upstreams/target",
                                  timeout=5).status_code == 200, timeout=30, what="the route")
    app.conf.task_always_eager = False  # the bencher runs the tasks, so the API answers at once
    bencher = start_bencher(local_cluster, gateway, tmp_path)
    try:
        refused = ferry("bench", "create", "target", "--qps", "100000")
        assert refused.returncode == 1 and "base.qps" in refused.stderr, refused.stderr

        followed = ferry.ok("bench", "create", "target", "--qps", "20", "--duration", "3", "--concurrency", "4",
                            "-d", json.dumps({"instances": [IRIS_SAMPLE]}), "--path", "/v1/models/target:predict",
                            "--follow", timeout=60)
        lines = followed.stdout.splitlines()
        assert lines[0].startswith("Created benchmark task local/benchmark-target-"), lines
        name = lines[0].split("local/", 1)[1].split(":")[0]
        assert any(" Running " in f" {line} " and "%" in line for line in lines), lines  # progress while running
        assert f"{name} Completed:" in lines[-1], lines

        listed = ferry.ok("bench", "list", "target").stdout
        assert name in listed and "Completed" in listed and "100%" in listed

        report = ferry.ok("bench", "report", name).stdout
        assert "Requests" in report and "200:" in report and "SECOND" in report
        data = ferry.json("bench", "report", f"local/{name}")["Data"]
        assert data["Summary"]["Errors"] == 0 and 30 <= data["Summary"]["Requests"] <= 60
        assert data["Summary"]["StatusCodes"] == {"200": data["Summary"]["Requests"]}

        assert ferry.json("bench", "describe", name)["Status"] == "Completed"
        long = ferry.json("bench", "create", "target", "--duration", "60", "--concurrency", "1")["TaskName"]

        def state_within(wanted: str, seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while BenchmarkTask.objects.get(name=long).state != wanted:
                assert time.monotonic() < deadline, f"the task did not become {wanted}"
                time.sleep(0.1)

        state_within("Running", 30)
        assert "stopping" in ferry.ok("bench", "stop", long).stdout

        state_within("Stopped", 5)
        assert "Stopped" in ferry.ok("bench", "describe", long).stdout
        assert "starting" in ferry.ok("bench", "start", long).stdout
        state_within("Running", 30)
        assert "deleted" in ferry.ok("bench", "delete", long).stdout  # a running task's runner sees it gone
        assert "deleted" in ferry.ok("bench", "delete", name).stdout
        missing = ferry("bench", "describe", name)
        assert missing.returncode == 1 and "no benchmark task" in missing.stderr.lower()
    finally:
        stop(bencher, signal.SIGTERM)
