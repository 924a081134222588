"""Installs a package into a virtual environment of its own, saying how far pip got (deployer/engines.py).

No Django: the steps are `python -m venv`, `pip install <package>`, `pip uninstall -y <unwanted>`, each a
subprocess whose output goes to a log file. Progress is pip's phase (its last "Collecting", "Downloading",
"Installing collected packages" ... line), reported every `progress_every_seconds` while it changes or time
passes. The files are made readable by other users whatever the caller's umask (`make run` sets 077): the
node agent may run instances as users of their own.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

TAIL_LINES = 12
# pip's lines that say what it is doing, not only that it is still at it.
PHASE_PREFIXES = ("Collecting", "Downloading", "Processing", "Using cached", "Building", "Installing",
                  "Successfully", "Found existing", "Uninstalling", "Requirement already satisfied", "Creating")


class InstallFailed(Exception):
    """A step failed; the message names it and ends with the last lines of its output."""


def install_environment(venv: Path, package: str, *, log_path: Path, remove: tuple[str, ...] = (),
                        timeout_seconds: float = 1800, progress_every_seconds: float = 30,
                        on_progress: Callable[[float, str], None] = lambda seconds, phase: None,
                        base_python: str | None = None) -> None:
    """Makes `venv` afresh and installs `package` into it, then removes `remove`. Raises InstallFailed."""
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_seconds
    progress = _Progress(on_progress, progress_every_seconds)
    with open(log_path, "w") as log:
        progress.phase = "Creating the virtual environment"
        _step([base_python or _base_python(), "-m", "venv", str(venv)], log, progress, deadline, "making the environment")
        python = str(venv / "bin" / "python")
        _step([python, "-m", "pip", "install", "--no-input", "--progress-bar", "off", package], log, progress,
              deadline, f"pip install {package}")
        if remove:
            _step([python, "-m", "pip", "uninstall", "-y", *remove], log, progress, deadline,
                  f"pip uninstall {' '.join(remove)}")


def _base_python() -> str:
    """The interpreter itself, not a virtual environment's: a venv made from a venv's python works, but one
    made from the base interpreter does not depend on Ferry's own environment staying where it is."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return base if os.path.exists(base) else sys.executable


class _Progress:
    def __init__(self, on_progress: Callable[[float, str], None], every_seconds: float):
        self.on_progress = on_progress
        self.every_seconds = every_seconds
        self.began = time.monotonic()
        self.phase = ""
        self.reported_phase = ""
        self.reported_at = self.began

    def maybe_report(self) -> None:
        now = time.monotonic()
        if now - self.reported_at < self.every_seconds:
            return
        if self.phase == self.reported_phase and now - self.reported_at < max(self.every_seconds, 1) * 2:
            return  # nothing new: said again only every other period
        self.reported_phase, self.reported_at = self.phase, now
        self.on_progress(now - self.began, self.phase)


def _step(argv: list[str], log, progress: _Progress, deadline: float, what: str) -> None:
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONUNBUFFERED": "1"}
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                   stdin=subprocess.DEVNULL, umask=0o022, errors="replace")
    except OSError as exc:
        raise InstallFailed(f"{what} could not start: {exc}") from exc
    reader = threading.Thread(target=_read, args=(process, log, tail, progress), daemon=True)
    reader.start()
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            reader.join(5)
            raise InstallFailed(f"{what} did not finish in time; its last lines:\n" + "\n".join(tail))
        progress.maybe_report()
        time.sleep(0.1)
    reader.join(10)
    progress.maybe_report()
    if process.returncode != 0:
        raise InstallFailed(f"{what} exited with code {process.returncode}; its last lines:\n" + "\n".join(tail))


def _read(process: subprocess.Popen, log, tail: collections.deque, progress: _Progress) -> None:
    for line in process.stdout:
        log.write(line)
        indented = line.startswith(" ")  # pip's details of a step (an upgrade's "Uninstalling ...") are not a phase
        line = line.strip()
        if line:
            tail.append(line[:300])
            if not indented and line.startswith(PHASE_PREFIXES):
                progress.phase = line[:120] + ("..." if len(line) > 120 else "")
    log.flush()
