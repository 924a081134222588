"""Per-instance log files: the agent's own lines, copy-truncate rotation, and reading the last run back.

Instance output goes straight from the process into the file (no pipe through the agent), so its lines are
exactly as the process wrote them, without an added timestamp. Lines the agent writes start with an ISO
timestamp and `[ferry-agent]`; every start writes one, so a run's output begins after the last of them.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

AGENT_TAG = "[ferry-agent]"
START_MARK = f"{AGENT_TAG} Starting instance "
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
KEEP_GENERATIONS = 3
TAIL_BYTES = 64 * 1024

# What a process tends to print when an allocation failed under RLIMIT_DATA. "failed to map segment" is the
# dynamic loader failing to map a shared library's writable data (an import under a tight limit); OpenBLAS
# (loaded by numpy) says "Memory allocation still failed" and exits when its buffers do not fit.
OUT_OF_MEMORY_MARKERS = ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "out of memory",
                         "failed to map segment from shared object", "Memory allocation still failed")
PORT_IN_USE_MARKERS = ("Address already in use", "EADDRINUSE", "address already in use")


def max_bytes() -> int:
    value = os.environ.get("FERRY_INSTANCE_LOG_MAX_BYTES") or getattr(settings, "FERRY_INSTANCE_LOG_MAX_BYTES", None)
    return int(value) if value else DEFAULT_MAX_BYTES


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_agent_line(path: Path, message: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{timestamp()} {AGENT_TAG} {message}\n".encode())
    finally:
        os.close(fd)


def rotate_if_needed(path: Path, limit: int) -> bool:
    """Copy-truncate: instance.log -> instance.log.1 (.1 -> .2 -> .3), then empty instance.log in place.

    The process keeps its file open with O_APPEND, so after the truncate it writes at the new end. What it
    writes between the copy and the truncate is lost (logrotate's copytruncate has the same gap).
    """
    try:
        if path.stat().st_size <= limit:
            return False
    except FileNotFoundError:
        return False
    for generation in range(KEEP_GENERATIONS - 1, 0, -1):
        older = path.with_name(f"{path.name}.{generation}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{generation + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    os.truncate(path, 0)
    write_agent_line(path, f"Rotated the log (the earlier lines are in {path.name}.1)")
    return True


def output_of_last_run(path: Path) -> str:
    """What the instance wrote since the agent last started it (within the last 64 KiB of the log)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - TAIL_BYTES))
            tail = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    start = tail.rfind(START_MARK)
    run = tail[start:] if start >= 0 else tail
    # Only the instance's own output: the agent's lines (such as the memory limit note) would match markers.
    return "".join(line for line in run.splitlines(keepends=True) if f" {AGENT_TAG} " not in line)


def ran_out_of_memory(output: str) -> bool:
    return any(marker in output for marker in OUT_OF_MEMORY_MARKERS)


def port_was_taken(output: str) -> bool:
    return any(marker in output for marker in PORT_IN_USE_MARKERS)
