"""bench: EAS's benchmark tasks (CreateBenchmarkTask ... DescribeBenchmarkTaskReport; docs/benchmarks.md). A load
test sent from Ferry through the cluster's own gateway; `--follow` prints its progress each second until it ends."""

from __future__ import annotations

import json
import time

import click
from rich.text import Text

from .. import output
from ..client import ApiError, segment
from ..common import State, output_option, pass_state, read_json_file

ENDED = ("Completed", "Stopped", "Error")
STYLES = {"Completed": "green", "Running": "yellow", "Creating": "yellow", "Starting": "yellow",
          "Stopping": "yellow", "Stopped": "dim", "Error": "bold red"}
EXIT_FAILED = 1


def task_path(state: State, name: str, suffix: str = "") -> str:
    """CLUSTER/NAME, or NAME looked up among your tasks (its cluster is the task's Region)."""
    cluster, _, task = name.rpartition("/")
    cluster = cluster or state.settings.cluster
    if not cluster:
        found = [t for t in state.client.get("/benchmark-tasks", Filter=task, PageSize=100).get("Tasks", [])
                 if t.get("TaskName") == task]
        if not found:
            raise ApiError("BenchmarkTaskNotFound", f"You have no benchmark task named {task}.", status=404)
        cluster = found[0].get("Region", "local")
    return f"/benchmark-tasks/{segment(cluster)}/{segment(task)}{suffix}"


def status_text(status: str) -> Text:
    return Text(status or "-", style=STYLES.get(status, ""))


@click.group()
def bench():
    """Benchmark tasks: load a service through its gateway and report QPS, latency and errors.

    \b
      ferry bench create demo_iris --qps 50 --duration 30 -d @request.json --follow
      ferry bench list demo_iris
      ferry bench report benchmark-demo_iris-1a2b
      ferry bench start benchmark-demo_iris-1a2b --follow    run it again
    """


@bench.command()
@click.argument("service")
@click.option("--duration", type=click.IntRange(min=1), metavar="SECONDS", help="How long (default 60 s).")
@click.option("--qps", type=click.IntRange(min=1), help="Requests per second, open loop (default: closed loop).")
@click.option("--concurrency", type=click.IntRange(min=1), help="Requests in flight at most (default 8).")
@click.option("-d", "--data", "data", metavar="JSON|@FILE", help="The request body (JSON, or @file holding it).")
@click.option("--path", "http_path", metavar="PATH", help="After /api/predict/SERVICE, e.g. /v1/models/x:predict.")
@click.option("-f", "--file", "config_file", metavar="FILE",
              help="EAS's whole task configuration (JSON); the options above override it.")
@click.option("--follow", is_flag=True, help="Print its progress until it ends.")
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def create(ctx, state: State, service, duration, qps, concurrency, data, http_path, config_file, follow, fmt):
    """Create a benchmark task for SERVICE; it starts at once."""
    config = read_json_file(config_file, "configuration") if config_file else {}
    if not isinstance(config, dict):
        raise click.UsageError("the configuration must be a JSON object")
    ref_cluster, _, name = service.rpartition("/")
    config.setdefault("service", {})["serviceName"] = name
    if ref_cluster or state.settings.cluster:
        config["service"]["clusterId"] = ref_cluster or state.settings.cluster
    base = config.setdefault("base", {})
    for key, value in (("duration", duration), ("qps", qps), ("concurrency", concurrency)):
        if value is not None:
            base[key] = value
    if data is not None:
        config["data"] = {"json": _body(data)}
    if http_path is not None:
        config.setdefault("http", {})["path"] = http_path
    body = state.client.post("/benchmark-tasks", json.dumps(config)).body
    if output.machine(fmt) and not follow:
        output.dump(body, fmt)
        return
    output.say(f"Created benchmark task {body.get('Region')}/{body.get('TaskName')}: "
               f"{body.get('Message', '').split(': ', 1)[-1]}")
    if follow:
        _follow(ctx, state, f"{body.get('Region')}/{body.get('TaskName')}")


def _body(data: str):
    if data.startswith("@"):
        return read_json_file(data[1:], "request body")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"is not JSON: {exc}", param_hint="--data") from None


@bench.command("list")
@click.argument("service", required=False)
@output_option("table", "json", "yaml")
@pass_state
def list_(state: State, service, fmt):
    """Benchmark tasks, newest first (only SERVICE's when given)."""
    query = {"PageSize": 100, **({"ServiceName": service.rpartition("/")[2]} if service else {})}
    body = state.client.get("/benchmark-tasks", **query)

    def human(body):
        rows = [(t.get("TaskName"), t.get("ServiceName"), t.get("Region"), status_text(t.get("Status")),
                 f"{t.get('Progress', 0):.0f}%", t.get("CreateTime"), t.get("Message"))
                for t in body.get("Tasks") or []]
        if rows:
            output.table(["NAME", "SERVICE", "CLUSTER", "STATUS", "PROGRESS", "CREATED", "MESSAGE"], rows)
        else:
            output.note("No benchmark tasks.")

    output.emit(body, fmt, human)


@bench.command()
@click.argument("name")
@output_option("table", "json", "yaml")
@pass_state
def describe(state: State, name, fmt):
    """A task: its state, progress, configuration and summary."""
    body = state.client.get(task_path(state, name))

    def human(body):
        latency = (body.get("Summary") or {}).get("LatencyMs") or {}
        output.fields([("Name", body.get("TaskName")), ("Service", body.get("ServiceName")),
                       ("Cluster", body.get("Region")), ("Status", status_text(body.get("Status"))),
                       ("Reason", body.get("Reason")), ("Progress", f"{body.get('Progress', 0):.0f}%"),
                       ("Message", body.get("Message")), ("Created", body.get("CreateTime")),
                       ("Started", body.get("StartTime")), ("Ended", body.get("EndTime")),
                       ("Latency p50/p90/p99", "/".join(str(latency.get(k, "-")) for k in ("P50", "P90", "P99"))
                        + " ms" if latency else None),
                       ("Config", json.dumps(body.get("Config") or {}))])

    output.emit(body, fmt, human)


@bench.command()
@click.argument("name")
@click.option("--follow", is_flag=True, help="Print its progress until it ends.")
@pass_state
@click.pass_context
def start(ctx, state: State, name, follow):
    """Run a task again from the start (its report starts empty)."""
    output.say(state.client.put(task_path(state, name, "/start")).body.get("Message", ""))
    if follow:
        _follow(ctx, state, name)


@bench.command()
@click.argument("name")
@pass_state
def stop(state: State, name):
    """Stop a running task; its report keeps what was measured."""
    output.say(state.client.put(task_path(state, name, "/stop")).body.get("Message", ""))


@bench.command()
@click.argument("name")
@pass_state
def delete(state: State, name):
    """Delete a task and its report (a running one stops)."""
    output.say(state.client.delete(task_path(state, name)).body.get("Message", ""))


@bench.command()
@click.argument("name")
@output_option("table", "json", "yaml")
@pass_state
def report(state: State, name, fmt):
    """The report: the summary, then QPS, latency percentiles and errors for each second."""
    body = state.client.get(task_path(state, name, "/report"), ReportType="RAW")

    def human(body):
        data = body.get("Data") or {}
        summary = data.get("Summary") or {}
        if summary:
            _summary_lines(summary)
            output.say("")
        rows = [(r.get("Second"), r.get("Qps"), r.get("P50"), r.get("P90"), r.get("P99"), r.get("Errors"),
                 " ".join(f"{code}:{count}" for code, count in (r.get("StatusCodes") or {}).items()))
                for r in data.get("Rows") or []]
        if rows:
            output.table(["SECOND", "QPS", "P50 MS", "P90 MS", "P99 MS", "ERRORS", "CODES"], rows)
        else:
            output.note("No second measured yet.")
        output.note(f"Charts: {body.get('ReportUrl')}")

    output.emit(body, fmt, human)


def _summary_lines(summary: dict) -> None:
    latency = summary.get("LatencyMs") or {}
    output.fields([("Requests", f"{summary.get('Requests')} ({summary.get('Errors')} errors, "
                                f"{summary.get('Dropped', 0)} dropped)"),
                   ("Throughput", f"{summary.get('AvgQps')} req/s average, {summary.get('MaxQps')} at most"),
                   ("Latency", f"p50 {latency.get('P50')} ms, p90 {latency.get('P90')} ms, "
                               f"p99 {latency.get('P99')} ms, max {latency.get('Max')} ms"),
                   ("Status codes", " ".join(f"{c}:{n}" for c, n in (summary.get("StatusCodes") or {}).items()))])


def _follow(ctx: click.Context, state: State, name: str, interval: float = 1.0) -> None:
    """One line a second (progress, requests so far, the last second's QPS and p99) until the task ends;
    exits 1 when it ends in Error."""
    path = task_path(state, name)
    seen = None
    while True:
        task = state.client.get(path)
        status = task.get("Status")
        summary = task.get("Summary") or {}
        line = (f"{status} {task.get('Progress', 0):.0f}%  {summary.get('Requests', 0)} requests, "
                f"{summary.get('Errors', 0)} errors, p99 {(summary.get('LatencyMs') or {}).get('P99', 0)} ms")
        if line != seen:
            output.line_out(Text(time.strftime("%H:%M:%S  ", time.gmtime())).append(line))
            seen = line
        if status in ENDED:
            output.say(f"{task.get('TaskName')} {status}: {task.get('Message')}")
            if status == "Error":
                ctx.exit(EXIT_FAILED)
            return
        time.sleep(interval)
