"""A throwaway PostgreSQL cluster on loopback for the test session.

Runs the machine's own server binaries (installing Debian's `postgresql` when running as root and none is
found), in a temp dir, tuned for speed over durability: the data is deleted at the end anyway. It asks for a
password (SCRAM), as a deployment's does: loopback is shared with the instances the tests start, and a server
that trusts every local connection would hand them the database. `url` carries the password.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .process import HarnessError, free_port, make_tempdir, spawn, stop, wait_until

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, postgres) were found neither on PATH nor in /usr/lib/postgresql/*/bin.\n"
    "Install them (Debian/Ubuntu: `sudo apt-get install postgresql`; Fedora: `sudo dnf install "
    "postgresql-server`; macOS: `brew install postgresql`), or run as root to let the harness install them, "
    "or set DATABASE_URL to a PostgreSQL server of your own."
)


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def find_bindir() -> Path | None:
    """The directory holding both `initdb` and `postgres`: PATH first, then Debian's versioned dirs (newest)."""
    candidates = []
    for name in ("initdb", "postgres", "pg_ctl"):
        found = shutil.which(name)
        if found:
            candidates.append(Path(os.path.realpath(found)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


def install_with_apt() -> None:
    """Debian's server package, non-interactively. Only called as root, so no sudo is needed."""
    print("ferry harness: installing PostgreSQL with apt-get (not found on this machine)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
    ):
        result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr)
        if result.returncode != 0:
            raise HarnessError(f"`{shlex.join(argv)}` failed with code {result.returncode}.\n{INSTALL_HINT}")


def ensure_bindir() -> Path:
    bindir = find_bindir()
    if bindir is None and os.geteuid() == 0 and shutil.which("apt-get"):
        install_with_apt()
        bindir = find_bindir()
    if bindir is None:
        raise HarnessError(INSTALL_HINT)
    return bindir


def server_user() -> str | None:
    """initdb and postgres refuse to run as root: use the package's `postgres` user, else `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise HarnessError("Running as root, but neither a `postgres` nor a `nobody` user exists to run PostgreSQL as.")


class PostgresServer:
    """start() returns at once (initdb + postgres run in the background); wait_ready() blocks until it accepts."""

    def __init__(self) -> None:
        self.bindir = ensure_bindir()
        self.user = server_user()
        self.port = free_port()
        self.tmp = make_tempdir("ferry-test-pg-")
        self.log = self.tmp / "postgres.log"
        self.password = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ready_after: float | None = None

    @property
    def url(self) -> str:
        return f"postgres://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def version(self) -> str:
        out = subprocess.run([str(self.bindir / "postgres"), "--version"], capture_output=True, text=True).stdout
        found = re.search(r"\(PostgreSQL\) (\S+)", out)  # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        return found.group(1) if found else "?"

    def start(self) -> None:
        # The password reaches initdb in a file (0600, removed once read), never on a command line.
        pwfile = self.tmp / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password + "\n")
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.tmp, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        initdb = [
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}",
            # Over TCP and over the socket alike: no connection without the password.
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        ]  # fmt: skip
        # One shell runs both, so the whole startup overlaps with Django setup and test collection;
        # `exec` makes postgres the group leader that stop() signals.
        self._spawn(
            f"{shlex.join(initdb)} >/dev/null; status=$?; rm -f {shlex.quote(str(pwfile))}; "
            f"[ $status -eq 0 ] && exec {shlex.join(self._postgres_argv())}"
        )

    def restart(self) -> None:
        """The server again on the same port and data dir, after it stopped or was killed (it recovers from its
        write-ahead log as after a crash). Returns at once, like start()."""
        self._spawn(f"exec {shlex.join(self._postgres_argv())}")

    @property
    def data(self) -> Path:
        return self.tmp / "data"

    def _postgres_argv(self) -> list[str]:
        return [
            str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.tmp}",
            # Durability is pointless for a cluster deleted at the end: skip every flush.
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "jit=off", "-c", "max_connections=200",
        ]  # fmt: skip

    def _spawn(self, script: str) -> None:
        self.started_at = time.monotonic()
        # SIGQUIT = immediate shutdown: the postmaster stops its backends and removes its shared memory.
        self.proc = spawn(["sh", "-c", script], log=self.log, cwd=self.tmp, death_signal=signal.SIGQUIT, user=self.user)

    def wait_ready(self, timeout: float = 60.0) -> None:
        import psycopg

        def accepts() -> bool:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                return False

        wait_until(accepts, proc=self.proc, what=f"PostgreSQL on 127.0.0.1:{self.port}", log=self.log, timeout=timeout)
        self.ready_after = time.monotonic() - self.started_at

    def stop(self) -> None:
        stop(self.proc, signal.SIGQUIT)
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)
