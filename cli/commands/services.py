"""create, modify, desc, list, delete, start, stop, restart: CreateService, UpdateService, DescribeService,
ListServices, DeleteService, Start/Stop/RestartService and DeleteServiceInstances."""

from __future__ import annotations

import json
import sys

import click

from .. import output, waiting
from ..common import State, finish_write, output_option, pass_state, read_json_file, wait_options
from .traffic import rollout_text


def _labels(pairs: tuple[str, ...]) -> str | None:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--label")
        labels[key] = value
    return json.dumps(labels) if labels else None


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-w", "--workspace", metavar="PROJECT", help="Project (EAS workspace) to create it in.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label; repeatable.")
@click.option("--dry-run", is_flag=True, help="Print the Kubernetes manifests it would render; create nothing.")
@wait_options
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def create(ctx, state: State, file, workspace, labels, dry_run, wait, timeout, fmt):
    """Create a service from a file; wait until it runs.

    FILE is a service file in either EAS style (JSON; `-` reads stdin).

    Prints the service's endpoint and token, then waits until it is Running, printing its events as they
    happen. Ctrl-C stops the waiting, not the service.

    \b
      ferry create iris.json
      ferry create iris.json --no-wait -o json
    """
    document = read_json_file(file, "FILE")
    if dry_run:
        _print_manifests(state.client.post("/manifests", document, WorkspaceId=workspace).body, fmt)
        return
    response = state.client.post("/services", document, WorkspaceId=workspace, Labels=_labels(labels))
    body = response.body
    ref = state.client.resolve(f"{body.get('Region', '')}/{body.get('ServiceName', '')}")
    described = state.client.describe(ref)
    if output.machine(fmt):
        output.dump(body, fmt)
    else:
        output.say(f"Created service {ref.name} in cluster {ref.cluster}.")
        output.fields([("Endpoint", body.get("InternetEndpoint")),
                       ("Token", described.get("AccessToken") or "(not yours to see)"),
                       ("Status", output.status_text(described.get("Status", "")))])
    if wait:
        generation = int(described.get("Generation") or 0)
        code = waiting.wait(state.client, ref, waiting.running(generation), since="",  # a new service: all its events
                            timeout=timeout, machine=output.machine(fmt))
        if code:
            ctx.exit(code)


def parse_define(text: str) -> tuple[list[str], object]:
    """`metadata.instance=3` -> (["metadata", "instance"], 3); a value that is JSON is read as JSON."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise click.BadParameter(f"{text!r} is not KEY=VALUE, e.g. metadata.instance=3", param_hint="-D")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.split("."), value


def _apply_define(patch: dict, path: list[str], value: object) -> None:
    node = patch
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


@click.command()
@click.argument("name")
@click.option("-s", "--service-file", "file", type=click.Path(dir_okay=False, allow_dash=True),
              help="A (partial) service file to apply.")
@click.option("-D", "defines", multiple=True, metavar="KEY=VALUE",
              help="Set one field by its dotted path, e.g. -D metadata.instance=3; repeatable. JSON values "
                   "(numbers, true, null, [..]) are read as JSON.")
@click.option("--replace", is_flag=True, help="Replace the whole file (UpdateType=replace) instead of merging.")
@click.option("--strategy", type=click.Choice(["rolling", "canary", "blue-green"]),
              help="How a new version rolls out (default: the file's `rollout`, else rolling).")
@click.option("--canary-weight", type=click.IntRange(0, 100), metavar="PERCENT",
              help="With --strategy canary: the new version's share of traffic (default 10).")
@click.option("--dry-run", is_flag=True, help="Print the Kubernetes manifests the change would render; change nothing.")
@wait_options
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def modify(ctx, state: State, name, file, defines, replace, strategy, canary_weight, dry_run, wait, timeout, fmt):
    """Update a service from a file and/or -D fields.

    The partial service file and the -D fields are merged into the service's file.

    A change to what shapes an instance (model, processor, resources...) creates a new version that rolls
    out; scaling, grouping and the token do not. The wait ends when the service is Running again, or when a
    canary or blue-green rollout waits for you (`ferry promote`, `ferry switch`).

    \b
      ferry modify demo_iris -D metadata.instance=3
      ferry modify demo_iris -s iris-v2.json
      ferry modify demo_iris -s iris-v2.json --strategy canary --canary-weight 10
    """
    if not file and not defines:
        raise click.UsageError("Give a service file (-s FILE), fields (-D KEY=VALUE), or both.")
    patch = read_json_file(file, "--service-file") if file else {}
    if defines and not isinstance(patch, dict):
        raise click.BadParameter("must hold a JSON object to combine with -D", param_hint="--service-file")
    for text in defines:
        _apply_define(patch, *parse_define(text))
    ref = state.ref(name)
    if dry_run:
        path = state.client.service_path(ref, "/manifests")
        _print_manifests(state.client.post(path, patch, UpdateType="replace" if replace else None).body, fmt)
        return
    before = state.client.describe(ref)
    response = state.client.put(state.client.service_path(ref), patch, UpdateType="replace" if replace else None,
                                Strategy=strategy, CanaryWeight=canary_weight)
    finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout, before=before)


def _print_manifests(body: dict, fmt: str) -> None:
    """--dry-run: the rendered objects as YAML (or the whole answer with -o json / yaml)."""
    if output.machine(fmt):
        output.dump(body, fmt)
    else:
        click.echo(body.get("Yaml", ""), nl=False)


def _traffic(body: dict) -> str:
    return ", ".join(f"v{t['Version']} {t['Weight']} %" for t in body.get("Traffic") or []) or "-"


def show_service(body: dict) -> None:
    labels = ", ".join(f"{label['LabelKey']}={label['LabelValue']}" for label in body.get("Labels") or [])
    group = body.get("ServiceGroup")
    output.fields([
        ("Name", body.get("ServiceName")),
        ("Cluster", body.get("Region")),
        ("Project", body.get("WorkspaceId")),
        ("Status", output.status_text(body.get("Status", ""))),
        ("Reason", body.get("Reason")),
        ("Message", body.get("Message")),
        ("Instances", f"{body.get('RunningInstance', 0)}/{body.get('TotalInstance', 0)} running"),
        ("Versions", f"current {body.get('CurrentVersion')}, latest {body.get('LatestVersion')}, "
                     f"last rolled out {body.get('LastRolledOutVersion')}"),
        ("Traffic", _traffic(body)),
        ("Rollout", rollout_text(body["Rollout"]) if body.get("Rollout") else "-"),
        ("Endpoint", body.get("InternetEndpoint")),
        ("Group", f"{group} (weight {body.get('Weight')}, {body.get('TrafficState')})" if group else "-"),
        ("Resources", f"cpu {body.get('Cpu')}, memory {body.get('Memory')} MB, gpu {body.get('Gpu')}"),
        ("Image", body.get("Image")),
        ("Labels", labels),
        ("Desired", body.get("DesiredState")),
        ("Generation", f"{body.get('Generation')} (observed {body.get('ObservedGeneration')})"),
        ("Created", body.get("CreateTime")),
        ("Updated", body.get("UpdateTime")),
    ])
    conditions = body.get("Conditions") or []
    if conditions:
        output.out.print()
        output.table(["CONDITION", "STATUS", "REASON", "SINCE", "MESSAGE"],
                     [(c.get("type"), c.get("status"), c.get("reason"), (c.get("last_transition_time") or "")[:19],
                       c.get("message")) for c in conditions])


@click.command()
@click.argument("name")
@click.option("--config", "show_config", is_flag=True, help="Print the service file as it stands (JSON) instead.")
@output_option("table", "json", "yaml")
@pass_state
def desc(state: State, name, show_config, fmt):
    """Describe a service: status, versions, traffic.

    Also its instances, endpoint, resources and conditions.

    \b
      ferry desc demo_iris
      ferry desc demo_iris -o json | jq .Status
    """
    body = state.client.describe(state.ref(name))
    if show_config:
        output.dump(json.loads(body.get("ServiceConfig") or "{}"), "yaml" if fmt == "yaml" else "json")
        return
    output.emit(body, fmt, show_service)


@click.command(name="list")
@click.option("-f", "--filter", "contains", metavar="TEXT", help="Names containing TEXT.")
@click.option("--status", metavar="STATUS", help="Running, Failed, Stopped, Creating, ...")
@click.option("--cluster", metavar="CLUSTER", help="Only this cluster (EAS ResourceName).")
@click.option("--group", metavar="GROUP", help="Only this service group.")
@click.option("-w", "--workspace", metavar="PROJECT", help="Only this project (EAS WorkspaceId).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Only services with this label.")
@click.option("--sort", type=click.Choice(["CreateTime", "UpdateTime", "ServiceName", "Status", "TotalInstance"]))
@click.option("--order", type=click.Choice(["asc", "desc"]), default="desc", show_default=True)
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--page-size", type=click.IntRange(1, 1000), default=100, show_default=True)
@output_option()
@pass_state
def list_(state: State, contains, status, cluster, group, workspace, labels, sort, order, page, page_size, fmt):
    """List services, newest first.

    Every service of your projects (ListServices), with filters.

    \b
      ferry list
      ferry list --status Running -o wide
      ferry list -o json | jq -r '.Services[].ServiceName'
    """
    body = state.client.get("/services", Filter=contains, ServiceStatus=status,
                            ResourceName=cluster or state.settings.cluster, GroupName=group, WorkspaceId=workspace,
                            Label=_labels(labels), Sort=sort, Order=order, PageNumber=page, PageSize=page_size)

    def human(body):
        services = body.get("Services") or []
        if not services:
            output.note("No services.")
            return
        columns = ["NAME", "CLUSTER", "STATUS", "INSTANCES", "VERSION", "TRAFFIC", "UPDATED"]
        if fmt == "wide":
            columns += ["PROJECT", "CPU", "MEMORY", "GROUP", "REASON", "ENDPOINT"]
        rows = []
        for s in services:
            row = [s.get("ServiceName"), s.get("Region"), output.status_text(s.get("Status", "")),
                   f"{s.get('RunningInstance', 0)}/{s.get('TotalInstance', 0)}",
                   f"{s.get('CurrentVersion')}/{s.get('LatestVersion')}", _traffic(s), s.get("UpdateTime")]
            if fmt == "wide":
                row += [s.get("WorkspaceId"), s.get("Cpu"), s.get("Memory"), s.get("ServiceGroup"), s.get("Reason"),
                        s.get("InternetEndpoint")]
            rows.append(row)
        output.table(columns, rows)
        total = body.get("TotalCount", len(services))
        if total > len(services):
            output.note(f"{len(services)} of {total} services (page {page}; see --page, --page-size).")

    output.emit(body, fmt, human)


@click.command()
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@wait_options
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def delete(ctx, state: State, name, yes, wait, timeout, fmt):
    """Delete a service and wait until it is gone.

    Its instances stop, then the service is removed.

    Asks first when run in a terminal, unless --yes.
    """
    ref = state.ref(name)
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete service {ref.name} in cluster {ref.cluster}?", abort=True, err=True)
    response = state.client.delete(state.client.service_path(ref))
    finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout, goal=lambda _: waiting.deleted())


def _lifecycle(action: str, goal, summary: str):
    @click.command(name=action, help=summary)
    @click.argument("name")
    @wait_options
    @output_option("table", "json", "yaml")
    @pass_state
    @click.pass_context
    def command(ctx, state: State, name, wait, timeout, fmt):
        ref = state.ref(name)
        before = state.client.describe(ref)
        response = state.client.put(state.client.service_path(ref, f"/{action}"))
        finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout, goal=goal, before=before)

    return command


start = _lifecycle("start", waiting.running, "Start a stopped service; wait until it runs.")
stop = _lifecycle("stop", waiting.stopped, "Stop a service; it keeps its settings.")


@click.command()
@click.argument("name")
@click.option("-i", "--instance", "instances", multiple=True, metavar="INSTANCE",
              help="Restart only this instance (DeleteServiceInstances); repeatable.")
@wait_options
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def restart(ctx, state: State, name, instances, wait, timeout, fmt):
    """Restart a service's instances, or some of them.

    All of them, or those named with -i; waits until they serve again.

    \b
      ferry restart demo_iris
      ferry restart demo_iris -i demo-iris-1-abcde
    """
    ref = state.ref(name)
    before = state.client.describe(ref)
    listed = state.client.get(state.client.service_path(ref, "/instances"), PageSize=1000).get("Instances") or []
    started = {i["InstanceName"]: i.get("StartTime") for i in listed
               if not instances or i.get("InstanceName") in instances}
    if instances:
        response = state.client.delete(state.client.service_path(ref, "/instances"), InstanceList=",".join(instances))
    else:
        response = state.client.put(state.client.service_path(ref, "/restart"))
    finish_write(ctx, state, ref, response, fmt=fmt, wait=wait, timeout=timeout,
                 goal=lambda generation: waiting.restarted(state.client, ref, generation, started, before))

