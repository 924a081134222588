"""scale, autoscale, cronscale: UpdateService (metadata.instance), the ServiceAutoScaler and ServiceCronScaler
operations (Describe, Create or Update, Delete)."""

from __future__ import annotations

import click

from .. import output
from ..client import ApiError, ServiceRef
from ..common import State, finish_write, output_option, pass_state, read_json_file, wait_options


@click.command()
@click.argument("name")
@click.argument("instances", type=click.IntRange(min=0))
@wait_options
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def scale(ctx, state: State, name, instances, wait, timeout, fmt):
    """Set the number of instances; wait until ready.

    0 stops serving but keeps the service.

    \b
      ferry scale demo_iris 3
    """
    ref = state.ref(name)
    before = state.client.describe(ref)
    response = state.client.put(state.client.service_path(ref), {"metadata": {"instance": instances}})
    finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout, before=before,
                 message=f"Scaling {ref.name} to {instances} instance(s).")


def _exists(state: State, ref: ServiceRef, suffix: str) -> dict | None:
    try:
        return state.client.get(state.client.service_path(ref, suffix))
    except ApiError as exc:
        if exc.status == 404 and exc.code != "ServiceNotFound":
            return None
        raise


def _set(state: State, ref: ServiceRef, suffix: str, body: dict):
    """EAS has Create* and Update* for the same thing: create when there is none, update otherwise."""
    path = state.client.service_path(ref, suffix)
    return state.client.put(path, body) if _exists(state, ref, suffix) is not None else state.client.post(path, body)


def _metric(text: str) -> dict:
    name, sep, threshold = text.partition("=")
    try:
        value = float(threshold)
    except ValueError:
        value = None
    if not sep or not name or value is None:
        raise click.BadParameter(f"{text!r} is not METRIC=THRESHOLD, e.g. qps=10 or cpu=70", param_hint="--metric")
    return {"metricName": name, "threshold": int(value) if value.is_integer() else value}


@click.command()
@click.argument("name")
@click.option("--min", "minimum", type=click.IntRange(min=0), help="Fewest instances (0: scale to zero).")
@click.option("--max", "maximum", type=click.IntRange(min=1), help="Most instances.")
@click.option("--metric", "metrics", multiple=True, metavar="METRIC=THRESHOLD",
              help="Scale on qps (per instance), cpu or gpu[util] (percent), queue[backlog]; repeatable.")
@click.option("--scale-up-window", type=click.IntRange(min=0), metavar="SECONDS",
              help="How long load must stay high before scaling up.")
@click.option("--scale-down-window", type=click.IntRange(min=0), metavar="SECONDS",
              help="How long load must stay low before scaling down.")
@click.option("-s", "--file", "file", type=click.Path(dir_okay=False, allow_dash=True),
              help="The whole autoscaler as EAS JSON ({min, max, scaleStrategies, behavior}).")
@click.option("--off", is_flag=True, help="Remove the autoscaler; the instance count stays fixed.")
@wait_options
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def autoscale(ctx, state: State, name, minimum, maximum, metrics, scale_up_window, scale_down_window, file, off,
              wait, timeout, fmt):
    """Show, set or remove the autoscaler.

    With no options it shows the autoscaler.

    \b
      ferry autoscale demo_iris --min 1 --max 5 --metric qps=10
      ferry autoscale demo_iris
      ferry autoscale demo_iris --off
    """
    ref = state.ref(name)
    path = state.client.service_path(ref, "/autoscaler")
    before = state.client.describe(ref)
    setting = any(v is not None for v in (minimum, maximum, scale_up_window, scale_down_window, file)) or metrics
    if off:
        if setting:
            raise click.UsageError("--off removes the autoscaler; give it alone.")
        response = state.client.delete(path)
    elif setting:
        body = read_json_file(file, "--file") if file else {}
        if not isinstance(body, dict):
            raise click.BadParameter("must hold a JSON object", param_hint="--file")
        if minimum is not None:
            body["min"] = minimum
        if maximum is not None:
            body["max"] = maximum
        if metrics:
            body["scaleStrategies"] = [_metric(text) for text in metrics]
        for key, seconds in (("scaleUp", scale_up_window), ("scaleDown", scale_down_window)):
            if seconds is not None:
                body.setdefault("behavior", {}).setdefault(key, {})["stabilizationWindowSeconds"] = seconds
        response = _set(state, ref, "/autoscaler", body)
    else:
        shown = state.client.get(path)
        output.emit(shown, fmt, lambda b: output.fields([
            ("Service", b.get("ServiceName")), ("Min", b.get("MinReplica")), ("Max", b.get("MaxReplica")),
            ("Metrics", ", ".join(f"{s.get('metricName')}={s.get('threshold')}"
                                  for s in b.get("ScaleStrategies") or [])),
            ("Behavior", b.get("Behavior") or "-"),
        ]))
        return
    finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout, before=before)


@click.command()
@click.argument("name")
@click.option("--job", "jobs", multiple=True, nargs=3, metavar="NAME SCHEDULE SIZE",
              help='A scale job: at SCHEDULE (6-field cron, seconds first) the service gets SIZE instances, '
                   'e.g. --job morning "0 0 8 * * *" 5; repeatable.')
@click.option("--timezone", default="UTC", show_default=True, help="Time zone of the schedules.")
@click.option("--exclude-date", "exclude", multiple=True, metavar="CRON", help="Days on which no job runs (cron).")
@click.option("-s", "--file", "file", type=click.Path(dir_okay=False, allow_dash=True),
              help="The whole cron scaler as EAS JSON ({ScaleJobs, ExcludeDates}).")
@click.option("--off", is_flag=True, help="Remove the cron scaler.")
@output_option("table", "json", "yaml")
@pass_state
def cronscale(state: State, name, jobs, timezone, exclude, file, off, fmt):
    """Show, set or remove the cron scaler.

    With no options it shows the cron scaler.

    \b
      ferry cronscale demo_iris --job morning "0 0 8 * * *" 5 --job night "0 0 20 * * *" 1
      ferry cronscale demo_iris --off
    """
    ref = state.ref(name)
    path = state.client.service_path(ref, "/cronscaler")
    if off:
        if jobs or file or exclude:
            raise click.UsageError("--off removes the cron scaler; give it alone.")
        response = state.client.delete(path)
    elif jobs or file:
        body = read_json_file(file, "--file") if file else {}
        if not isinstance(body, dict):
            raise click.BadParameter("must hold a JSON object", param_hint="--file")
        scale_jobs = list(body.get("ScaleJobs") or [])
        for job_name, schedule, size in jobs:
            if not size.isdigit():
                raise click.BadParameter(f"SIZE of job {job_name!r} must be a whole number, not {size!r}",
                                         param_hint="--job")
            scale_jobs.append({"Name": job_name, "Schedule": schedule, "TargetSize": int(size), "TimeZone": timezone})
        body["ScaleJobs"] = scale_jobs
        if exclude:
            body["ExcludeDates"] = list(body.get("ExcludeDates") or []) + list(exclude)
        response = _set(state, ref, "/cronscaler", body)
    else:
        shown = state.client.get(path)

        def human(b):
            output.table(["JOB", "SCHEDULE", "SIZE", "TIMEZONE", "STATE"],
                         [(j.get("Name"), j.get("Schedule"), j.get("TargetSize"), j.get("TimeZone"), j.get("State"))
                          for j in b.get("ScaleJobs") or []])
            if b.get("ExcludeDates"):
                output.say("Excluded: " + ", ".join(b["ExcludeDates"]))

        output.emit(shown, fmt, human)
        return
    if output.machine(fmt):
        output.dump(response.body, fmt)
    else:
        output.say(response.body.get("Message") or "Done.")
