"""placements: where the model mesh has loaded a pool's models, or one model's copies (GET .../placements,
Ferry's own DescribeServicePlacements; docs/mesh.md)."""

from __future__ import annotations

import click
from rich.text import Text

from .. import output
from ..common import State, output_option, pass_state

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
STATE_STYLES = {"Loaded": "green", "Loading": "yellow", "Failed": "bold red"}


def size_text(count: int | None) -> str:
    """Bytes as a person reads them: 314572800 -> 300 MiB."""
    if not count:
        return "0"
    value, unit = float(count), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.0f} {UNITS[unit]}" if unit == 0 or value >= 10 else f"{value:.1f} {UNITS[unit]}"


@click.command()
@click.argument("name")
@output_option()
@pass_state
def placements(state: State, name, fmt):
    """Where the model mesh has loaded models: a pool's copies and its instances, or a model's copies.

    \b
      ferry placements pool1          every copy of every model, and each instance's model memory
      ferry placements m1             where m1 is loaded, and its pool
    """
    ref = state.ref(name)
    body = state.client.get(state.client.service_path(ref, "/placements"))

    def human(body):
        is_pool = body.get("Pool") == ref.name  # a pool answers with its own name
        wide = fmt == "wide"
        columns = ["MODEL"] * is_pool + ["VERSION", "INSTANCE"] + ["KEY"] * wide + ["STATE", "MEMORY", "REQUESTS"]
        columns += ["LOADED"] * wide + ["LAST USED", "WHY"]
        rows = [[c.get("Model")] * is_pool + [f"v{c.get('Version')}", c.get("Instance")] + [c.get("Key")] * wide
                + [Text(c.get("State", ""), style=STATE_STYLES.get(c.get("State"), "")), size_text(c.get("MemoryBytes")),
                   c.get("Requests")] + [c.get("LoadedAt")] * wide + [c.get("LastUsedAt"), c.get("Reason")]
                for c in body.get("Placements") or []]
        if not is_pool:
            output.say(f"{ref.name} is in pool {body.get('Pool')}.")
        if rows:
            output.table(columns, rows)
        else:
            output.note(f"{ref.name} has no model loaded." if is_pool else f"{ref.name} is not loaded anywhere.")
        instances = body.get("Instances") or []
        if instances:
            output.say("")
            output.table(["INSTANCE", "READY", "MODEL MEMORY", "MODELS"],
                         [(i.get("Name"), i.get("Ready"), size_text(i.get("ModelMemoryBytes")),
                           ", ".join(i.get("Models") or []) or None) for i in instances])

    output.emit(body, fmt, human)
