"""`make run`'s supervisor: runs the processes of a Procfile and restarts the ones that crash.

    python scripts/supervise.py [-f Procfile] [--grace SECONDS] [--listen NAME=HOST:PORT ...] [NAME ...]

Each `name: command` line runs under bash in a process group of its own, with its output merged and printed
as `HH:MM:SS name | line`; the supervisor's own lines are `HH:MM:SS system | ...`.

- An exit with code 0 is a one-shot that finished: it is not restarted.
- Any other exit (a code, a signal) is a crash: the process is started again after 1 s, 2 s, 4 s ... at most
  30 s; a run of 60 s or more starts the backoff over at 1 s. Other processes are left alone. What else the
  crashed process left in its group is killed first (Celery's pool children would otherwise linger).
- `--listen gateway=127.0.0.1:8080`: the supervisor opens that listening socket itself, once, and hands it to
  each run of `gateway` (inherited file descriptor, its number in FERRY_LISTEN_FD, as systemd's socket
  activation does). While the process is down and restarting, connections wait in the socket's backlog
  instead of being refused: a crash costs only the requests the dead process held.
- SIGINT (Ctrl-C), SIGTERM or SIGHUP stops everything: SIGTERM to every group, at most --grace seconds
  (default 10) for them to exit, then SIGKILL. A second signal SIGKILLs at once.

Why not honcho: it stops every process when one exits. supervisord and circus restart, but neither prefixes
each line with its process (supervisord writes them unlabelled or to files), their backoff is linear or
flat, and both give up on a process after a few quick failures, which is the outage this replaces.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime

BACKOFF_FIRST, BACKOFF_MAX, RESET_AFTER = 1.0, 30.0, 60.0
TICK = 0.1
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
LISTEN_ARGUMENT = re.compile(r"^([A-Za-z0-9_-]+)=(.+):(\d+)$")
LISTEN_BACKLOG = 2048
COLORS = ("36", "33", "32", "35", "34", "31")


def read_procfile(path: str) -> dict[str, str]:
    """name -> command, in file order; comments and blank lines skipped (honcho's format)."""
    with open(path, encoding="utf-8") as procfile:
        return dict(match.groups() for line in procfile if (match := PROCFILE_LINE.match(line.rstrip("\n"))))


def backoff_delay(failures: int) -> float:
    """Seconds to wait before restart number `failures + 1` of a crash loop."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2**failures)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"signal {-returncode}, {signal.Signals(-returncode).name}"
    return f"code {returncode}"


def parse_listen(text: str) -> tuple[str, str, int]:
    """`NAME=HOST:PORT` -> (name, host, port); IPv6 hosts in brackets: `gateway=[::1]:8080`."""
    match = LISTEN_ARGUMENT.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"--listen {text!r}: expected NAME=HOST:PORT, as gateway=127.0.0.1:8080")
    name, host, port = match.groups()
    return name, host.removeprefix("[").removesuffix("]"), int(port)


def open_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket the supervisor keeps for the life of the run, inheritable by its children."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(LISTEN_BACKLOG)
    listener.set_inheritable(True)
    return listener


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty already


class Output:
    """Prefixed lines from several threads, never interleaved within a line."""

    def __init__(self, names: list[str]):
        self.width = max(len(name) for name in [*names, "system"])
        colored = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        self.colors = {name: COLORS[i % len(COLORS)] for i, name in enumerate(names)} if colored else {}
        self.lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        prefix = f"{datetime.now():%H:%M:%S} {name:<{self.width}} |"
        if name in self.colors:
            prefix = f"\033[{self.colors[name]}m{prefix}\033[0m"
        with self.lock:
            try:
                sys.stdout.write(f"{prefix} {text}\n")
                sys.stdout.flush()
            except OSError:
                pass  # nobody reads our output any more; keep supervising


@dataclass
class Program:
    name: str
    command: str
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0  # crashes in a row, for the backoff
    restarts: int = 0
    restart_at: float | None = None
    reader: threading.Thread | None = None  # prints its output
    listener: socket.socket | None = None  # held across its restarts (--listen)


class Supervisor:
    def __init__(self, programs: list[Program], grace: float):
        self.programs, self.grace = programs, grace
        self.output = Output([program.name for program in programs])
        self.wake = threading.Event()
        self.stop_signal: str | None = None
        self.kill_now = False

    def say(self, text: str) -> None:
        self.output.line("system", text)

    def on_signal(self, signum, _frame) -> None:
        if self.stop_signal:
            self.kill_now = True
        self.stop_signal = self.stop_signal or signal.Signals(signum).name
        self.wake.set()

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.on_signal)
        for program in self.programs:
            self.start(program)
        while not self.stop_signal and any(p.proc or p.restart_at for p in self.programs):
            self.reap()
            self.start_due()
            self.wake.wait(TICK)
            self.wake.clear()
        if self.stop_signal:
            self.say(f"{self.stop_signal} received: stopping all processes")
        self.stop_all()
        return 0

    def start(self, program: Program) -> None:
        # Own process group: a signal reaches what the command started too, and the terminal's Ctrl-C reaches
        # only us, so every stop goes through stop_all's SIGTERM and grace. bash, not sh: it execs a lone
        # command, so the pid we report and signal is the program's own.
        inherited, env = (), None
        if program.listener:
            inherited = (program.listener.fileno(),)
            env = os.environ | {"FERRY_LISTEN_FD": str(program.listener.fileno())}
        program.proc = subprocess.Popen(
            ["bash", "-c", program.command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, pass_fds=inherited, env=env)
        program.started_at, program.restart_at = time.monotonic(), None
        self.say(f"{program.name} started (pid {program.proc.pid})")
        program.reader = threading.Thread(target=self.pump, args=(program.name, program.proc.stdout), daemon=True)
        program.reader.start()

    def pump(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.output.line(name, raw.decode(errors="replace").rstrip("\r\n"))
        stream.close()

    def reap(self) -> None:
        for program in self.programs:
            if program.proc and program.proc.poll() is not None:
                self.exited(program)

    def exited(self, program: Program) -> None:
        proc, program.proc = program.proc, None
        signal_group(proc.pid, signal.SIGKILL)  # the rest of its group: orphans would hold ports and memory
        if proc.returncode == 0:
            self.say(f"{program.name} exited (code 0); not restarted: it finished")
            if program.listener:
                program.listener.close()  # nobody will accept what waits there: refuse it instead
                program.listener = None
            return
        if time.monotonic() - program.started_at >= RESET_AFTER:
            program.failures = 0
        delay = backoff_delay(program.failures)
        program.failures += 1
        program.restarts += 1
        program.restart_at = time.monotonic() + delay
        self.say(f"{program.name} exited ({describe_exit(proc.returncode)}); "
                 f"restarting in {delay:g} s (restart {program.restarts})")

    def start_due(self) -> None:
        for program in self.programs:
            if program.restart_at is not None and time.monotonic() >= program.restart_at:
                self.start(program)

    def stop_all(self) -> None:
        pending = [program for program in self.programs if program.proc]
        for program in pending:
            signal_group(program.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while pending and not self.kill_now and time.monotonic() < deadline:
            for program in [p for p in pending if p.proc.poll() is not None]:
                pending.remove(program)
                self.stopped(program)
            time.sleep(TICK)
        for program in pending:
            if program.proc.poll() is None:
                why = "a second signal" if self.kill_now else f"did not stop within {self.grace:g} s"
                self.say(f"{program.name}: {why}: SIGKILL")
            self.stopped(program)

    def stopped(self, program: Program) -> None:
        signal_group(program.proc.pid, signal.SIGKILL)  # what it left in its group, or itself after the grace
        program.proc.wait()
        program.reader.join(timeout=1)  # its last lines, before we exit and take the thread with us
        self.say(f"{program.name} stopped ({describe_exit(program.proc.returncode)})")
        if program.listener:
            program.listener.close()  # only now: until it stopped, connections still waited for it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a Procfile's processes, restarting those that crash.")
    parser.add_argument("-f", "--procfile", default="Procfile")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL on stop")
    parser.add_argument("--listen", type=parse_listen, action="append", default=[], metavar="NAME=HOST:PORT",
                        help="hold this listening socket for process NAME across its restarts (FERRY_LISTEN_FD)")
    parser.add_argument("names", nargs="*", help="processes to run (default: all)")
    args = parser.parse_args(argv)
    commands = read_procfile(args.procfile)
    unknown = [name for name in [*args.names, *(name for name, _, _ in args.listen)] if name not in commands]
    if unknown or not commands:
        parser.error(f"not in {args.procfile}: {', '.join(unknown)}" if unknown else f"no process in {args.procfile}")
    names = args.names or list(commands)
    programs = {name: Program(name, commands[name]) for name in names}
    for name, host, port in args.listen:
        if name not in programs:
            continue  # not run this time
        try:
            programs[name].listener = open_listener(host, port)
        except OSError as error:
            parser.exit(1, f"supervise: cannot listen on {host}:{port} for {name}: {error.strerror or error}\n")
    return Supervisor(list(programs.values()), args.grace).run()


if __name__ == "__main__":
    sys.exit(main())
