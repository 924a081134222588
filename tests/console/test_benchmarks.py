"""The console's benchmark pages in a real browser: a developer starts a benchmark of a running service from its
page, watches the report fill in (htmx polling) until it completes, and reads QPS and latency percentiles on the
monitoring's SVG charts; a rate over the bound is refused beside the form, naming the field. A real bencher
worker runs the load through a real gateway to a real model server."""

import json
import re
import signal

import pytest
import requests
from playwright.sync_api import expect

from config.celery import app
from processors.demo import IRIS_SAMPLE
from services.models import BenchmarkTask, Project
from services.writes import service_create
from tests.agent.kit import wait_for
from tests.api.test_benchmark_sdk import broker, start_bencher  # noqa: F401 -- a fixture and a helper
from tests.e2e.conftest import converge
from tests.gateway.conftest import gateway  # noqa: F401 -- fixture: a real gateway process
from tests.harness.process import stop

from .conftest import log_in, screenshot
from .test_browser import developer, iris_file

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_developer_runs_a_benchmark_and_reads_its_charts(browser_page, local_cluster, demo_models,  # noqa: F811
                                                           gateway, broker, tmp_path):
    page = browser_page
    iris = service_create(actor=None, project=Project.objects.get(name="default"), document=iris_file(demo_models))
    converge(iris, lambda s: s.phase == "Running", what="iris to run")
    wait_for(lambda: requests.get(f"{gateway.url}/api/v1/servicediscovery/upstreams/iris", timeout=5).status_code
             == 200, timeout=30, what="the route")
    app.conf.task_always_eager = False  # the bencher runs the load; the page answers at once
    bencher = start_bencher(local_cluster, gateway, tmp_path)
    try:
        log_in(page, *developer())
        page.goto("/services/local/iris/")
        page.locator("#tab-benchmarks").click()
        expect(page.get_by_role("heading", name="Benchmarks of iris")).to_be_visible()
        expect(page.get_by_text("No benchmark yet.")).to_be_visible()

        page.get_by_label("Requests per second").fill("100000")
        page.get_by_role("button", name="Start benchmark").click()
        expect(page.locator("#benchmark-errors")).to_contain_text("base.qps")
        assert BenchmarkTask.objects.count() == 0

        page.get_by_label("Requests per second").fill("20")
        page.get_by_label("Duration (s)").fill("4")
        page.get_by_label("Concurrency").fill("4")
        page.get_by_label("Path after /api/predict/iris").fill("/v1/models/iris:predict")
        page.get_by_label("Request body (JSON)").fill(json.dumps({"instances": [IRIS_SAMPLE]}))
        page.get_by_role("button", name="Start benchmark").click()
        page.wait_for_url(re.compile(r".*/benchmarks/local/benchmark-iris-[0-9a-f]+/$"))
        expect(page.locator("#bench-status")).to_have_text("Completed", timeout=30_000)
        expect(page.locator("#bench-progress")).to_have_text("100%")
        expect(page.locator("#bench-stop")).to_be_disabled()  # the actions are part of the polled report
        expect(page.locator("#benchmark-report")).to_have_attribute("data-polling", "off")
        for chart in ("bench-qps", "bench-latency"):
            points = int(page.locator(f"#{chart}").get_attribute("data-points"))
            assert points >= 4, (chart, points)  # one point a second for each series drawn
        task = BenchmarkTask.objects.get()
        summary = task.report["Summary"]
        expect(page.locator("#bench-requests")).to_contain_text(f"{summary['Requests']} (0 errors")
        screenshot(page, "benchmark-report.png")

        page.get_by_role("link", name="Benchmarks").click()
        expect(page.locator("#benchmark-table")).to_contain_text(task.name)
        expect(page.locator("#benchmark-table")).to_contain_text("Completed")
    finally:
        stop(bencher, signal.SIGTERM)
