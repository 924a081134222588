"""versions, canary, promote, rollback, switch, finish, pause, resume, release, mirror.

Mapped to ListServiceVersions, Ferry's rollout operations (`.../rollout`, `.../rollout/<action>`), Ferry's canary
(`PUT .../canary {"Weight": N}`, which decides what a canary does), Ferry's
per-version traffic (`PUT .../traffic {"Weights": {...}}`) when no rollout is in progress, UpdateServiceVersion
(rollback --version), ReleaseService (group weight) and ServiceMirror.
"""

from __future__ import annotations

import click

from contracts.rollouts import Strategy, promote_action

from .. import output
from ..client import ApiError, ServiceRef
from ..common import State, finish_write, output_option, pass_state, wait_options
from ..waiting import Goal, running


def _serving(body: dict) -> dict[int, int]:
    return {int(t["Version"]): int(t["Weight"]) for t in body.get("Traffic") or [] if t.get("Weight")}


def _set_weights(ctx, state: State, ref: ServiceRef, weights: dict[int, int], message: str, fmt, wait, timeout):
    body = {"Weights": {str(number): weight for number, weight in sorted(weights.items()) if weight}}
    response = state.client.put(state.client.service_path(ref, "/traffic"), body)
    finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout, message=message)


@click.command()
@click.argument("name")
@output_option()
@pass_state
def versions(state: State, name, fmt):
    """List versions and each one's share of traffic."""
    ref = state.ref(name)
    body = state.client.get(state.client.service_path(ref, "/versions"), PageSize=1000)

    def human(body):
        described = state.client.describe(ref)
        last = described.get("LastRolledOutVersion")
        columns = ["VERSION", "WEIGHT", "BUILT", "MESSAGE"] + (["SERVICE FILE"] if fmt == "wide" else [])
        rows = []
        for v in body.get("Versions") or []:
            mark = " (last rolled out)" if v.get("ImageId") == last else ""
            row = [f"{v.get('ImageId')}{mark}", f"{v.get('Weight', 0)} %", v.get("BuildTime"), v.get("Message")]
            rows.append(row + ([v.get("ServiceConfig")] if fmt == "wide" else []))
        output.table(columns, rows)
        if described.get("Rollout"):
            output.say(rollout_text(described["Rollout"]))

    output.emit(body, fmt, human)


def rollout_text(rollout: dict) -> str:
    text = (f"Rollout ({rollout.get('Strategy')}): version {rollout.get('FromVersion')} -> "
            f"{rollout.get('ToVersion')}, {rollout.get('State')}")
    if rollout.get("Strategy") == Strategy.CANARY:
        text += f", canary {rollout.get('CanaryWeight')} %"
    return text + (f" ({rollout['Message']})" if rollout.get("Message") else "")


def _rollout_action(ctx, state: State, name: str, action: str, fmt, wait, timeout):
    ref = state.ref(name)
    before = state.client.describe(ref)
    response = state.client.put(state.client.service_path(ref, f"/rollout/{action}"))
    finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout, before=before)


def _rollout(body: dict) -> dict:
    return body.get("Rollout") or {}


@click.command()
@click.argument("name")
@click.option("--weight", type=click.IntRange(0, 100), required=True, metavar="PERCENT",
              help="Share of traffic for the newest version.")
@wait_options
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def canary(ctx, state: State, name, weight, wait, timeout, fmt):
    """Send some traffic to the newest version.

    During a canary rollout (`ferry modify NAME -s FILE --strategy canary`) this sets the canary's share;
    during a rolling or blue-green rollout it is refused (promote, roll back, switch or finish it first);
    otherwise the newest version gets PERCENT and the last rolled-out one (or the one before) the rest.

    \b
      ferry modify demo_iris -s iris-v2.json --strategy canary --canary-weight 10
      ferry canary demo_iris --weight 50
    """
    ref = state.ref(name)
    before = state.client.describe(ref)
    # What a canary does, and its refusal (RolloutInProgress) during a rolling or blue-green rollout, is the
    # server's decision (services.writes.canary_set), the same for the console and the API.
    response = state.client.put(state.client.service_path(ref, "/canary"), {"Weight": weight})
    finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout, before=before)


@click.command()
@click.argument("name")
@wait_options
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def promote(ctx, state: State, name, wait, timeout, fmt):
    """Send all traffic to the newest version.

    During a rollout the new version takes all traffic as fast as its instances get ready; otherwise the
    newest version is given 100 % (ending a canary set with `ferry canary`).
    """
    ref = state.ref(name)
    body = state.client.describe(ref)
    if promote_action(_rollout(body).get("State")) == "promote":
        response = state.client.put(state.client.service_path(ref, "/rollout/promote"))
        return finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout, before=body)
    latest = int(body.get("LatestVersion") or 0)
    if _serving(body) == {latest: 100}:
        output.say(f"Version {latest} of {ref.name} already serves all traffic.")
        return
    _set_weights(ctx, state, ref, {latest: 100}, f"Promoted version {latest} of {ref.name} to 100 %.",
                 fmt, wait, timeout)


@click.command()
@click.argument("name")
@click.option("--version", "number", type=click.IntRange(min=1), metavar="N",
              help="Version to serve (UpdateServiceVersion); default: the last rolled-out one during a rollout, "
                   "else the one before it.")
@wait_options
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def rollback(ctx, state: State, name, number, wait, timeout, fmt):
    """Serve an earlier version with all traffic.

    \b
      ferry rollback demo_iris
      ferry rollback demo_iris --version 1
    """
    if number is None:
        return _rollout_action(ctx, state, name, "rollback", fmt, wait, timeout)
    ref = state.ref(name)
    before = state.client.describe(ref)
    response = state.client.put(state.client.service_path(ref, "/version"), {"Version": number})
    finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout, before=before,
                 message=f"Rolling {ref.name} back to version {number}.")


def _simple_action(action: str, summary: str, details: str):
    @click.command(name=action, help=f"{summary}\n\n{details}")
    @click.argument("name")
    @wait_options
    @output_option("table", "json", "yaml")
    @pass_state
    @click.pass_context
    def command(ctx, state: State, name, wait, timeout, fmt):
        _rollout_action(ctx, state, name, action, fmt, wait, timeout)

    return command


switch = _simple_action("switch", "Blue-green: switch all traffic to the newest version.",
                        "Once the green version is ready at 0 % (`ferry modify NAME -s FILE --strategy blue-green` "
                        "waits for that), all traffic moves in one step; blue stays warm until `ferry finish`.")
pause = _simple_action("pause", "Pause a rolling or canary rollout.", "Traffic stays where it is until `ferry resume`.")
resume = _simple_action("resume", "Resume a paused rollout.", "The rollout goes on from where it was paused.")


@click.command()
@click.argument("name")
@wait_options
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def finish(ctx, state: State, name, wait, timeout, fmt):
    """Blue-green: retire the old version after a switch.

    Its instances stop; unless --no-wait, waits until they are gone.
    """
    ref = state.ref(name)
    body = state.client.describe(ref)
    rollout = body.get("Rollout") or {}
    old = rollout.get("FromVersion")
    response = state.client.put(state.client.service_path(ref, "/rollout/finish"))
    path = state.client.service_path(ref, "/instances")
    latest = int(rollout.get("ToVersion") or body.get("LatestVersion") or 0)

    def old_instances() -> list[dict]:
        listed = state.client.get(path, PageSize=1000).get("Instances") or []
        return [i for i in listed if int(i.get("Version") or 0) != latest]

    def retired(generation: int) -> Goal:
        goal = running(generation)
        return Goal(f"serving version {latest} alone", goal.reached, goal.failure, lambda: not old_instances())

    finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout, goal=retired,
                 message=f"Finishing the blue-green rollout of {ref.name}: version {old} stops.")


@click.command()
@click.argument("name")
@click.option("--weight", type=click.IntRange(0, 100), metavar="PERCENT", help="Weight inside its service group.")
@click.option("--state", "traffic_state", type=click.Choice(["standalone", "grouping"]),
              help="grouping: takes the group's traffic; standalone: only its own.")
@output_option("table", "json", "yaml")
@pass_state
def release(state: State, name, weight, traffic_state, fmt):
    """Set a service's weight in its service group.

    \b
      ferry release iris_green --weight 20
    """
    if weight is None and traffic_state is None:
        raise click.UsageError("Give --weight, --state or both.")
    ref = state.ref(name)
    body = {key: value for key, value in (("Weight", weight), ("TrafficState", traffic_state)) if value is not None}
    response = state.client.put(state.client.service_path(ref, "/release"), body)
    output.emit(response.body, fmt, lambda b: output.say(b.get("Message") or "Done."))


@click.command()
@click.argument("name")
@click.option("--target", "targets", multiple=True, metavar="SERVICE", help="Service to copy requests to; repeatable.")
@click.option("--ratio", type=click.IntRange(0, 100), metavar="PERCENT", help="Share of requests copied.")
@click.option("--off", is_flag=True, help="Stop mirroring.")
@output_option("table", "json", "yaml")
@pass_state
def mirror(state: State, name, targets, ratio, off, fmt):
    """Show, set or stop mirroring requests to other services.

    A share of the requests is copied to each target; their answers are discarded.

    \b
      ferry mirror demo_iris --target iris_shadow --ratio 10
    """
    ref = state.ref(name)
    path = state.client.service_path(ref, "/mirror")
    if off:
        body = state.client.delete(path).body
    elif targets or ratio is not None:
        if not targets or ratio is None:
            raise click.UsageError("Give both --target and --ratio.")
        payload = {"Target": list(targets), "Ratio": ratio}
        try:
            state.client.get(path)
            body = state.client.put(path, payload).body
        except ApiError as exc:
            if exc.code != "MirrorNotFound":
                raise
            body = state.client.post(path, payload).body
    else:
        shown = state.client.get(path)
        output.emit(shown, fmt, lambda b: output.fields([
            ("Service", b.get("ServiceName")), ("Targets", b.get("Target")), ("Ratio", f"{b.get('Ratio')} %")]))
        return
    output.emit(body, fmt, lambda b: output.say(b.get("Message") or "Done."))
