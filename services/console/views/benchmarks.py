"""A service's benchmark tasks in the console: the list with a form to start one, and a task's report as charts of
QPS and latency percentiles per second (the monitoring tab's server-side SVG charts), polled while it runs.
Every change goes through services.writes.benchmarks, as the API's."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from services.errors import FerryError, NotFound
from services.models import BenchmarkState
from services.selectors.benchmarks import benchmark_for, benchmarks_list
from services import writes

from ..access import can_write, forbidden_is_403, service_or_404
from ..charts import Series, line_chart
from ..rendering import render
from .base import POLL_SECONDS, wants_fragment

ACTIONS = {"start": "benchmark_start", "stop": "benchmark_stop"}  # looked up when called, as every write


@login_required
@forbidden_is_403
def benchmarks(request, cluster_id: str, name: str):
    service = service_or_404(request, cluster_id, name)
    form = {"duration": "10", "qps": "10", "concurrency": "4", "path": "", "body": "{}"}
    errors: dict[str, str] = {}
    if request.method == "POST":
        service = service_or_404(request, cluster_id, name, write=True)
        form = {key: request.POST.get(key, "").strip() for key in form}
        config, errors = _config(service.name, form)
        if not errors:
            try:
                task = writes.benchmark_create(actor=request.user, config=config, service=service)
            except FerryError as exc:
                errors = {error["Path"]: error["Message"] for error in exc.errors} or {"": exc.message}
            else:
                messages.success(request, f"Benchmark task {task.name} started.")
                return redirect(reverse("console:benchmark", args=[task.cluster.name, task.name]))
    tasks = benchmarks_list(request.user, service=service)
    return render(request, "console/benchmarks/list.html", {
        "service": service, "tasks": tasks, "form": form, "errors": errors,
        "may_write": can_write(request.user, service.project)}, status=400 if errors else 200)


def _config(service_name: str, form: dict) -> tuple[dict, dict]:
    """The form as EAS's configuration; field errors keyed by the configuration's paths, as the write's."""
    errors: dict[str, str] = {}
    base = {}
    for field, key in (("duration", "duration"), ("qps", "qps"), ("concurrency", "concurrency")):
        if form[field] == "" and field == "qps":
            continue  # no rate: closed loop at the concurrency
        try:
            base[key] = int(form[field])
        except ValueError:
            errors[f"base.{key}"] = "must be an integer"
    try:
        body = json.loads(form["body"] or "{}")
    except ValueError as exc:
        errors["data.json"] = f"is not JSON: {exc}"
        body = None
    config = {"service": {"serviceName": service_name}, "base": base, "data": {"json": body}}
    if form["path"]:
        config["http"] = {"path": form["path"]}
    return config, errors


@login_required
@require_safe
def benchmark(request, cluster_id: str, task_name: str):
    try:
        task = benchmark_for(request.user, cluster_id, task_name)
    except NotFound as exc:
        raise Http404(exc.message) from None
    running = task.state in BenchmarkState.active()
    context = {"task": task, "service": task.service, "running": running, "poll_seconds": POLL_SECONDS,
               "polling": running, "may_write": can_write(request.user, task.project), **report_context(task)}
    if wants_fragment(request, "benchmark-report"):
        response = render(request, "console/benchmarks/_report.html", context)
        if not running:
            response.status_code = 286  # htmx stops polling
        return response
    return render(request, "console/benchmarks/report.html", context)


def report_context(task) -> dict:
    report = task.report or {}
    rows = report.get("Rows", [])
    summary = report.get("Summary", {})
    # The x axis is wall time (the charts' axis labels are UTC clock times): second n of the run at start + n.
    start = task.started_at.timestamp() if task.started_at else 0.0
    end = start + max(len(rows), 1)

    def series(label, key):
        return Series(label, [(start + row["Second"], row.get(key)) for row in rows])

    charts = []
    if rows:
        charts = [
            line_chart("Requests per second", [series("answered", "Qps"), series("errors", "Errors")],
                       start=start, end=end, unit="req/s", chart_id="bench-qps"),
            line_chart("Latency, p50 / p90 / p99", [series("p50", "P50"), series("p90", "P90"),
                                                    series("p99", "P99")],
                       start=start, end=end, unit="ms", chart_id="bench-latency"),
        ]
    return {"summary": summary, "rows": rows, "charts": charts}


@login_required
@require_POST
@forbidden_is_403
def benchmark_action(request, cluster_id: str, task_name: str, action: str):
    try:
        task = benchmark_for(request.user, cluster_id, task_name, write=True)
    except NotFound as exc:
        raise Http404(exc.message) from None
    service = task.service
    try:
        if action == "delete":
            writes.benchmark_delete(actor=request.user, task=task)
            messages.success(request, f"Deleted benchmark task {task.name}.")
            return redirect(reverse("console:benchmarks", args=[service.cluster.name, service.name]))
        if action not in ACTIONS:
            raise Http404(f"No action {action}.")
        getattr(writes, ACTIONS[action])(actor=request.user, task=task)
        messages.success(request, f"Benchmark task {task.name}: {action} asked.")
    except FerryError as exc:
        messages.error(request, exc.message)
    return redirect(reverse("console:benchmark", args=[task.cluster.name, task.name]))
