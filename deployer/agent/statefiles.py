"""Files under `<var>/instances/<name>/`: the instance log and `process.json`.

`process.json` says which process runs the instance (pid and start time, which together identify it even
if pids are reused), on which port and since when. It lets a restarted agent adopt instances instead of
starting duplicates. It is written when a process starts and removed when the agent saw it end.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger("ferry.agent")

STATE_FILE = "process.json"
LOG_FILE = "instance.log"


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    create_time: float
    argv: list[str]
    port: int
    started_at: str  # ISO 8601
    grace_period_seconds: float


def instance_dir(instances_dir: Path, name: str) -> Path:
    # Names come from the driver (`<service>-v<version>-<n>`); anything else is made safe for a path.
    return instances_dir / re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")


def log_path(instances_dir: Path, name: str) -> Path:
    return instance_dir(instances_dir, name) / LOG_FILE


def write_record(instances_dir: Path, record: ProcessRecord) -> None:
    directory = instance_dir(instances_dir, record.name)
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / (STATE_FILE + ".tmp")
    temporary.write_text(json.dumps(asdict(record), indent=1))
    os.chmod(temporary, 0o600)  # the agent's own: an instance with a user of its own may not read or forge it
    os.replace(temporary, directory / STATE_FILE)  # atomic: a crash leaves the old file or the new one


def remove_record(instances_dir: Path, name: str) -> None:
    (instance_dir(instances_dir, name) / STATE_FILE).unlink(missing_ok=True)


def read_records(instances_dir: Path) -> list[ProcessRecord]:
    records = []
    for path in sorted(instances_dir.glob(f"*/{STATE_FILE}")):
        try:
            records.append(ProcessRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("Ignored the unreadable state file %s (%s)", path, exc)
    return records
