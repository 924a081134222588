"""Where one cold start's time went, read back from the instance log (the agent's lines and the model server's).

The agent writes `<ISO UTC time> [ferry-agent] ...`; the model server (kserve's logging) and uvicorn write
`<local time> <pid> <logger> ...`. Both carry milliseconds, which is the resolution of every part below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

AGENT_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z \[ferry-agent\] (.*)$")
SERVER_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) (.*)$")

# (part, what it covers), in the order they happen; the bench prints them in this order.
PARTS = (
    ("control plane", "request -> the agent starts the instance: activate, reconcile (model fetch, cache hit), "
                      "rows written, agent woken"),
    ("spawn + imports", "new process: exec, import kserve/sklearn/...; warm pool: the hand-over to a standby"),
    ("model load", "read the model file (joblib)"),
    ("warm-up", "the warm-up requests through the model"),
    ("server start", "FastAPI routes, uvicorn binds the port"),
    ("readiness", "gateway mode: listening -> the agent's probe saw it ready and said so"),
    ("first request", "gateway mode: ready -> the response (reconcile publishes the route, the gateway forwards); "
                      "instance mode: listening -> the response (includes the bench's 10 ms polling)"),
    ("other", "the rest: between the parts above"),
)


@dataclass
class Run:
    total: float
    mode: str
    pooled: bool | None = None
    parts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_run(log_path: Path, began: float, ended: float, mode: str) -> Run:
    """The parts of the run that started at wall time `began` and was answered at `ended` (time.time())."""
    run = Run(total=ended - began, mode=mode)
    lines = _lines_since(log_path, began)
    if not lines:
        run.notes.append(f"no instance log lines after the request in {log_path}")
        return run
    at = {}
    for when, text in lines:
        for key, pattern in _MARKS.items():
            match = pattern.search(text)
            if match and key not in at:
                at[key] = (when, match)
    if "start" not in at:
        run.notes.append("the agent's 'Starting instance' line was not found")
        return run
    started = at["start"][0]
    run.pooled = "handed" in at
    if run.pooled:
        spawn = float(at["handed"][1].group(1)) / 1000
    elif "imported" in at:
        spawn = at["imported"][0] - started
    else:
        spawn = None
    listen = at.get("listen", (None,))[0]
    warmed = at.get("warmed", (None,))[0]
    parts = {
        "control plane": started - began,
        "spawn + imports": spawn,
        "model load": float(at["loaded"][1].group(1)) if "loaded" in at else None,
        "warm-up": float(at["warmed"][1].group(1)) if "warmed" in at else None,
        "server start": (listen - warmed) if listen and warmed else None,
    }
    ready = at.get("ready", (None,))[0]
    if mode == "gateway" and listen and ready:
        parts["readiness"], parts["first request"] = ready - listen, ended - ready
    elif listen:
        parts["first request"] = ended - listen
    run.parts = {name: value for name, value in parts.items() if value is not None}
    run.parts["other"] = run.total - sum(run.parts.values())
    return run


_MARKS = {
    "start": re.compile(r"Starting instance \S+ on port \d+"),
    "handed": re.compile(r"Handed instance \S+ to standby process \d+ of the warm pool in ([\d.]+) ms"),
    "imported": re.compile(r"imported the serving libraries in ([\d.]+) s"),
    "loaded": re.compile(r"loaded \S+ model \S+ in ([\d.]+) s"),
    "warmed": re.compile(r"warmed up with \d+ requests in ([\d.]+) s"),
    "listen": re.compile(r"Uvicorn running on "),
    "ready": re.compile(r"Instance \S+ became ready"),
}


def _lines_since(log_path: Path, began: float) -> list[tuple[float, str]]:
    """(wall time, text) of the log's lines from the last agent start at or after `began`."""
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    lines = []
    for line in text.splitlines():
        when = _time_of(line)
        if when is not None:
            lines.append((when, line))
    starts = [i for i, (when, line) in enumerate(lines) if when >= began - 0.001 and "Starting instance" in line]
    return lines[starts[-1]:] if starts else []


def _time_of(line: str) -> float | None:
    match = AGENT_TIME.match(line)
    if match:
        return datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC).timestamp()
    match = SERVER_TIME.match(line)
    if match:  # logging's asctime: local time
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").astimezone().timestamp()
    return None
