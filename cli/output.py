"""What the CLI prints: rich tables for people, the API's own JSON (or YAML) for scripts, errors on stderr.

Results go to stdout; progress, events while waiting, notes and errors go to stderr, so
`ferry desc svc -o json | jq` always reads clean JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .client import ApiError

FORMATS = ("table", "wide", "json", "yaml")


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        # Piped or captured: no terminal width to respect, so do not fold tables at 80 columns.
        width = int(os.environ.get("COLUMNS") or 0) or 200
        console = Console(stderr=stderr, highlight=False, width=width, soft_wrap=False)
    return console


out = _console(stderr=False)
err = _console(stderr=True)


def machine(fmt: str) -> bool:
    return fmt in ("json", "yaml")


def dump(data, fmt: str) -> None:
    """The API's body as it came, less RequestId (which identifies the call, not the resource)."""
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if key != "RequestId"}
    if fmt == "yaml":
        import yaml

        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False)
    print(text.rstrip("\n"), flush=True)


def emit(data: dict, fmt: str, human: Callable[[dict], None]) -> None:
    if machine(fmt):
        dump(data, fmt)
    else:
        human(data)


def table(columns: Iterable[str], rows: Iterable[Iterable], *, title: str | None = None) -> None:
    """kubectl-style columns: a header line, then one line per row; no rules, so `awk '{print $1}'` works."""
    grid = Table(box=None, title=title, title_justify="left", pad_edge=False, padding=(0, 3, 0, 0),
                 header_style="bold")
    for column in columns:
        grid.add_column(column, no_wrap=True)
    for row in rows:
        grid.add_row(*[cell if isinstance(cell, Text) else Text(_cell(cell)) for cell in row])
    # Rendered as wide as the rows need (cells never fold); the terminal wraps long lines, as with kubectl.
    wide = Console(width=10_000, force_terminal=out.is_terminal, color_system=out.color_system,
                   no_color=out.no_color, highlight=False)
    with wide.capture() as captured:
        wide.print(grid)
    lines = [line.rstrip() for line in captured.get().splitlines()]
    out.file.write("\n".join(lines) + "\n")  # on a terminal the captured text keeps its styles
    out.file.flush()


def fields(pairs: Iterable[tuple[str, object]]) -> None:
    """A two-column key/value block, as `eascmd desc` prints a service."""
    pairs = list(pairs)
    width = max((len(key) for key, _ in pairs), default=0)
    for key, value in pairs:
        line = Text(key.ljust(width) + "  ", style="bold")
        line.append_text(value if isinstance(value, Text) else Text(_cell(value)))
        line.rstrip()
        line_out(line)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    return text if text else "-"


STATUS_STYLES = {
    "Running": "green", "Failed": "bold red", "Stopped": "dim", "Deleting": "magenta",
    "Creating": "yellow", "Updating": "yellow", "Scaling": "yellow", "Waiting": "yellow", "Stopping": "yellow",
}


def status_text(status: str) -> Text:
    return Text(status or "-", style=STATUS_STYLES.get(status, ""))


def _write(console: Console, line: Text) -> None:
    """One line: rich styling on a terminal, plain text otherwise (no escape codes in pipes and logs).
    Plain writes also survive a Ctrl-C in the middle of printing without repeating the line later."""
    if console.is_terminal:
        console.print(line)
    else:
        stream = console.file
        stream.write(line.plain + "\n")
        stream.flush()


def line_out(line: Text) -> None:
    _write(out, line)


def say(message: str) -> None:
    """A human note about what happened (stdout: it is the command's result for a person)."""
    _write(out, Text(message))


def note(message: str, style: str = "") -> None:
    """Progress and side remarks: stderr, so they never mix with JSON on stdout."""
    _write(err, Text(message, style=style))


def warn(line: Text) -> None:
    _write(err, line)


def event_line(event: dict) -> Text:
    warning = event.get("Type") == "Warning"
    clock = (event.get("Time") or "")[11:19] or "--:--:--"
    line = Text(f"  {clock}  ")
    line.append(f"{event.get('Type', ''):<8}", style="yellow" if warning else "dim")
    line.append(f"{event.get('Reason', ''):<22} ", style="bold yellow" if warning else "bold")
    line.append(event.get("Message", ""))
    if event.get("Actor"):
        line.append(f" (by {event['Actor']})", style="dim")
    return line


def error(exc: ApiError) -> None:
    """Code and message, then each field path the server named, then the RequestId for bug reports."""
    head = Text("Error", style="bold red")
    head.append(f" [{exc.code}]" if exc.code else "")
    summary = "; ".join(f"{e.get('Path')}: {e.get('Message')}" if e.get("Path") else str(e.get("Message"))
                        for e in exc.errors)
    # Ferry's Message for field errors is those errors joined: list them one a line instead.
    shown = f"{len(exc.errors)} problem(s)" if exc.errors and exc.message == summary else exc.message
    head.append(f": {shown}")
    warn(head)
    for item in exc.errors:
        path = item.get("Path") or "$"
        warn(Text(f"  {path}: ", style="bold").append(str(item.get("Message", "")), style=""))
    if exc.request_id:
        warn(Text(f"  (RequestId {exc.request_id})", style="dim"))
