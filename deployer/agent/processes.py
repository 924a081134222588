"""Instance processes: spawn, identify, signal, and tell how they ended.

Each instance runs in its own session and process group (`start_new_session`), so the agent signals the
whole group (a shell and the server it started die together) and a Ctrl-C in the agent's terminal does not
reach instances directly: the agent stops them itself, gracefully.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import limited_exec, sandbox
from .launch import MARK_VAR_DIR

logger = logging.getLogger("ferry.agent")

LIMITED_EXEC = str(Path(limited_exec.__file__).resolve())
# Two processes are the same if pid and start time match; start times are read back with some rounding.
CREATE_TIME_TOLERANCE = 0.05


@dataclass(frozen=True)
class ExitStatus:
    code: int | None = None  # the shell's convention: 128 + signal number when killed by a signal
    signal: int | None = None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        if returncode < 0:
            return cls(code=128 - returncode, signal=-returncode)
        return cls(code=returncode)

    @property
    def known(self) -> bool:
        return self.code is not None

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by signal {self.signal} ({signal.Signals(self.signal).name})"
        if self.code is not None:
            return f"exited with code {self.code}"
        return "exited (code unknown: the process was adopted from an earlier agent)"


@dataclass(frozen=True)
class Confinement:
    """How one process is sandboxed (sandbox.py): the host's layers, its uid (None: Ferry's own), and what of
    the var directory it may see besides the model cache (its own directory; a standby: every instance's)."""

    isolation: sandbox.Isolation
    var_dir: Path
    uid: int | None = None
    own_dirs: list[Path] = field(default_factory=list)
    extra_paths: list[str] = field(default_factory=list)
    read_only_dirs: list[str] = field(default_factory=list)  # an engine's environment (sandbox.engine_view)


class ProcessHandle:
    """One instance process: a child of this agent (`popen`), or adopted from an agent that died.

    Under bubblewrap `pid` is bwrap's outer process (the group leader the agent signals, which exits with the
    command's status, 128 + n when a signal n ended it); `worker_pid()` is the command itself."""

    def __init__(self, pid: int, create_time: float, popen: subprocess.Popen | None = None,
                 uid: int | None = None, in_bwrap: bool = False):
        self.pid = pid
        self.create_time = create_time
        self.popen = popen
        self.uid = uid
        self.in_bwrap = in_bwrap

    @classmethod
    def adopt(cls, pid: int, create_time: float) -> ProcessHandle | None:
        """The process if it is still the one that was started (a pid can be reused), else None."""
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - create_time) > CREATE_TIME_TOLERANCE:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return cls(pid, create_time)

    def poll(self) -> ExitStatus | None:
        """How it ended, or None while it runs. Adopted processes are not our children: no exit code."""
        if self.popen is not None:
            returncode = self.popen.poll()
            if returncode is None:
                return None
            if self.in_bwrap and 128 < returncode < 128 + signal.NSIG:
                return ExitStatus(code=returncode, signal=returncode - 128)
            return ExitStatus.from_returncode(returncode)
        if self.is_alive():
            return None
        return ExitStatus()

    def is_alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            process = psutil.Process(self.pid)
            same = abs(process.create_time() - self.create_time) <= CREATE_TIME_TOLERANCE
            return same and process.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def signal_group(self, sig: int) -> None:
        signal_group(self.pid, sig)

    def worker_pid(self) -> int | None:
        """The command's own pid: under bubblewrap the first descendant that is not bwrap (None while bwrap
        is still setting up)."""
        if not self.in_bwrap:
            return self.pid
        try:
            for child in psutil.Process(self.pid).children(recursive=True):
                if child.name() != "bwrap":
                    return child.pid
        except psutil.Error:
            pass
        return None

    def kill_leftovers(self) -> None:
        """After the leader exited: whatever it started in its group goes too (it may hold the port)."""
        signal_group(self.pid, signal.SIGKILL)


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # already gone
    except PermissionError:
        logger.warning("Was not allowed to send %s to process group %s", signal.Signals(sig).name, pgid)


def resolve_executable(command: str, env: dict[str, str], cwd: str | None) -> str:
    """The file that would run, or FileNotFoundError / PermissionError saying why nothing would."""
    if "/" in command:
        path = Path(cwd or ".", command) if not os.path.isabs(command) else Path(command)
        if not path.is_file():
            raise FileNotFoundError(f"command not found: {command}")
        if not os.access(path, os.X_OK):
            raise PermissionError(f"command is not executable: {command}")
        return str(path.resolve())
    found = shutil.which(command, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(f"command not found: {command} (searched PATH)")
    return found


def spawn(argv: list[str], env: dict[str, str], cwd: str | None, log_path: Path,
          memory_limit_mb: int | None, stdin: int = subprocess.DEVNULL,
          confinement: Confinement | None = None) -> ProcessHandle:
    """Starts the command with stdout and stderr appended to the instance log (stdin: /dev/null, or for a
    warm pool's standby its end of the hand-off channel), inside its sandbox when `confinement` is given.

    The log is a file opened with O_APPEND, not a pipe to the agent: instances keep running, and keep
    logging, when the agent dies; and copy-truncate rotation works because every write goes to the end.
    """
    if cwd and not os.path.isdir(cwd):
        raise FileNotFoundError(f"working directory does not exist: {cwd}")
    executable = resolve_executable(argv[0], env, cwd)
    program, command = confined_command(argv, executable, env, cwd, memory_limit_mb, confinement)
    in_bwrap = confinement is not None and confinement.isolation.bwrap is not None
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        popen = subprocess.Popen(
            command, executable=program, env=env, cwd=cwd or None, stdin=stdin,
            stdout=log_fd, stderr=log_fd, start_new_session=True, close_fds=True,
        )
    finally:
        os.close(log_fd)
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:
        create_time = 0.0  # exited at once; poll() reports it through popen
    uid = confinement.uid if confinement is not None else None
    return ProcessHandle(popen.pid, create_time, popen, uid=uid, in_bwrap=in_bwrap)


def confined_command(argv: list[str], executable: str, env: dict[str, str], cwd: str | None,
                     memory_limit_mb: int | None, confinement: Confinement | None) -> tuple[str, list[str]]:
    """The program to execute and the whole command line: [limited_exec --ignore-stop, bwrap ...,]
    [limited_exec options,] the command."""
    options = ["--memory", str(memory_limit_mb * 1024 * 1024)] if memory_limit_mb else []
    bwrap = confinement.isolation.bwrap if confinement is not None else None
    if confinement is not None and confinement.uid is not None:
        options += ["--uid", str(confinement.uid), "--gid", str(confinement.uid)]
    elif bwrap:
        options.append("--restore-signals")
    if not options:
        return executable, list(argv)
    inner = [sys.executable, "-I", "-S", LIMITED_EXEC, *options, "--", executable, *argv]
    if not bwrap:
        return sys.executable, inner
    view = sandbox.bwrap_args(bwrap, confinement.var_dir, confinement.own_dirs,
                              [*confinement.extra_paths, executable, LIMITED_EXEC, *([cwd] if cwd else [])], cwd,
                              read_only_dirs=confinement.read_only_dirs)
    return sys.executable, [sys.executable, "-I", "-S", LIMITED_EXEC, "--ignore-stop", "--", bwrap, *view, *inner]


def marked_processes(var_dir: str, mark: str = MARK_VAR_DIR) -> list[psutil.Process]:
    """Live processes carrying this agent's mark in their environment: instances and their children (or,
    with the warm pool's mark, its standbys, including those that became instances)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid == os.getpid() or process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get(mark) == var_dir:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found
