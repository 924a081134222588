"""Process plumbing shared by the PostgreSQL and Redis servers of the test harness, and by the tests that run a
whole platform (`make run`)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


class HarnessError(RuntimeError):
    """A server of the test harness could not be found, installed or started."""


def make_tempdir(prefix: str) -> Path:
    """A temp dir tagged with this process's pid. Dirs left by runs that died outright (their servers got the
    parent-death signal, but nobody removed the files) are swept here."""
    for old in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            owner = int((old / "owner.pid").read_text())
        except (OSError, ValueError):
            continue  # not tagged (yet): leave it alone
        if not _alive(owner):
            shutil.rmtree(old, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / "owner.pid").write_text(str(os.getpid()))
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    """A loopback port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent(sig: int):
    """preexec_fn: the kernel sends `sig` to the child when pytest dies, even by SIGKILL (Linux only)."""

    def preexec() -> None:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)

    return preexec


def spawn(argv: list[str], *, log: Path, cwd: Path, death_signal: int, user: str | None = None) -> subprocess.Popen:
    """Start a server in its own session (so stop() can kill its whole process group), output to `log`.

    `user` drops privileges (PostgreSQL refuses to run as root). The parent-death signal is set after the
    uid change (CPython runs preexec_fn last), so it survives it.
    """
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent(death_signal),
            user=user,
            group=None if user is None else _primary_group(user),
            extra_groups=None if user is None else [],
        )


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def stop(proc: subprocess.Popen | None, sig: int, timeout: float = 10.0) -> None:
    """Send `sig` to the process group, wait, then SIGKILL whatever is left of the group."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    # Children (PostgreSQL backends) may outlive the leader for a moment: sweep the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def stop_platform(proc: subprocess.Popen, var_dir: Path, grace: float) -> None:
    """Stop a `make run` whose supervisor is `proc` (in a session of its own): SIGTERM as Ctrl-C would (the
    supervisor stops every process in its grace), SIGKILL of its group after `grace` seconds, then SIGKILL of
    whatever of that platform is left: instances outlive a killed agent, so they are found by their var dir
    (FERRY_VAR_DIR, or FERRY_AGENT_VAR_DIR for what the agent starts)."""
    import psutil

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    for process in psutil.process_iter():
        try:
            environ = process.environ()
            if str(var_dir) in (environ.get("FERRY_VAR_DIR"), environ.get("FERRY_AGENT_VAR_DIR")):
                process.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def log_tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(check, *, proc: subprocess.Popen, what: str, log: Path, timeout: float) -> None:
    """Poll `check()` until true; fail early, with the server's log, if the server exits."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if proc.poll() is not None:
            raise HarnessError(f"{what} exited with code {proc.returncode} before it was ready:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise HarnessError(f"{what} was not ready after {timeout:.0f} s:\n{log_tail(log)}")
        time.sleep(0.02)


@contextlib.contextmanager
def scratch_database(prefix: str):
    """The URL of a database of its own on the session's PostgreSQL (DATABASE_URL's server), dropped after:
    a `make run` under test migrates it from scratch, and nothing it writes meets the other tests' rows."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    server = urlsplit(os.environ["DATABASE_URL"])
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = urlunsplit(server._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(server._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
