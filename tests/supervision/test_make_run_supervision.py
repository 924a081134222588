"""`make run`'s supervisor (scripts/supervise.py), run for real on small Procfiles of its own: restarts with
backoff, one-shots left alone, stops that leave nothing running. The last test runs the real Procfile's `redis`
line the way scripts/run does."""

import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUPERVISE = ROOT / "scripts" / "supervise.py"
PY = shlex.quote(sys.executable)
SLEEPER = f"{PY} -c 'import time; print(\"up\", flush=True); time.sleep(600)'"


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to read its status."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition, timeout: float = 15, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Supervised:
    """The supervisor as a child of the test; its output is collected as (arrival time, line)."""

    def __init__(self, cwd: Path, procfile: Path, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, str(SUPERVISE), "-f", str(procfile), *args], cwd=cwd, env=env, text=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, pattern: str, timeout: float = 15, start: int = 0) -> tuple[int, float, re.Match]:
        """The first line from index `start` on that matches: (its index, its arrival time, the match)."""
        def found():
            for index, (at, line) in enumerate(self.lines[start:], start):
                if match := re.search(pattern, line):
                    return index, at, match
        return wait_until(found, timeout, f"{pattern!r} in:\n" + self.output())

    def pid_of(self, name: str, start: int = 0) -> tuple[int, int]:
        index, _, match = self.wait_for(rf"system +\| {name} started \(pid (\d+)\)", start=start)
        return index, int(match[1])

    def started_pids(self) -> list[int]:
        return [int(pid) for _, line in self.lines for pid in re.findall(r"started \(pid (\d+)\)", line)]

    def stop(self, signum: int, timeout: float = 15) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)


@pytest.fixture
def supervise(tmp_path):
    """Starts supervisors on a Procfile written to tmp_path; whatever a failed test left running is killed."""
    started: list[Supervised] = []

    def start(procfile_text: str, *args: str, cwd: Path = tmp_path, procfile: Path | None = None, env=None):
        if procfile is None:
            procfile = tmp_path / "Procfile"
            procfile.write_text(procfile_text)
        started.append(Supervised(cwd, procfile, *args, env=env))
        return started[-1]

    yield start
    for supervised in started:
        if supervised.proc.poll() is None:
            supervised.proc.kill()
            supervised.proc.wait()
        for pid in supervised.started_pids():
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_a_killed_process_is_restarted_and_the_others_keep_their_pids(supervise):
    supervised = supervise(f"one: {SLEEPER}\ntwo: {SLEEPER}\n")
    _, one = supervised.pid_of("one")
    _, two = supervised.pid_of("two")

    os.kill(one, signal.SIGKILL)

    index, _, _ = supervised.wait_for(r"system +\| one exited \(signal 9, SIGKILL\); restarting in 1 s \(restart 1\)")
    _, new_one = supervised.pid_of("one", start=index)
    assert new_one != one and alive(new_one)
    assert alive(two) and "two exited" not in supervised.output()
    assert supervised.stop(signal.SIGTERM) == 0


def test_a_crash_loop_backs_off_and_a_finished_one_shot_is_not_restarted(supervise):
    crasher = f"{PY} -c 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'"
    supervised = supervise(f"crasher: {crasher}\noneshot: echo done\n")

    supervised.wait_for(r"oneshot exited \(code 0\); not restarted")
    exits = [supervised.wait_for(rf"crasher exited \(signal 9, SIGKILL\); restarting in {delay} s \(restart {n}\)")
             for n, delay in ((1, 1), (2, 2), (3, 4))]
    for (index, exited_at, _), delay in zip(exits[:2], (1, 2)):
        restarted_at = supervised.wait_for(r"crasher started", start=index)[1]
        assert restarted_at - exited_at >= delay - 0.1  # the wait happened, not only its announcement

    # Had the one-shot been restarted like a crash, it would have been within 1 s, long before restart 3.
    assert len(re.findall(r"oneshot started", supervised.output())) == 1
    assert supervised.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_stops_every_process_and_what_they_started(supervise, signum):
    parent = (f"{PY} -c 'import subprocess, time; child = subprocess.Popen([\"sleep\", \"600\"]); "
              f"print(\"child\", child.pid, flush=True); time.sleep(600)'")
    supervised = supervise(f"sleeper: {SLEEPER}\nparent: {parent}\n")
    pids = [supervised.pid_of("sleeper")[1], supervised.pid_of("parent")[1]]
    pids.append(int(supervised.wait_for(r"parent +\| child (\d+)")[2][1]))
    assert all(alive(pid) for pid in pids)

    assert supervised.stop(signum) == 0

    wait_until(lambda: not any(alive(pid) for pid in pids), what=f"{pids} to end")
    assert f"{signal.Signals(signum).name} received: stopping all processes" in supervised.output()
    assert "sleeper stopped (signal 15, SIGTERM)" in supervised.output()


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(supervise):
    stubborn = (f"{PY} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"print(\"ignoring\", flush=True); time.sleep(600)'")
    supervised = supervise(f"stubborn: {stubborn}\nsleeper: {SLEEPER}\n", "--grace", "1")
    _, pid = supervised.pid_of("stubborn")
    supervised.wait_for(r"stubborn +\| ignoring")  # SIGTERM is ignored from here on

    signalled = time.monotonic()
    assert supervised.stop(signal.SIGTERM) == 0

    assert time.monotonic() - signalled >= 0.9
    assert "stubborn: did not stop within 1 s: SIGKILL" in supervised.output()
    assert "stubborn stopped (signal 9, SIGKILL)" in supervised.output()
    wait_until(lambda: not alive(pid), what=f"{pid} to end")


def test_backoff_doubles_from_1_s_up_to_30_s():
    spec = importlib.util.spec_from_file_location("supervise", SUPERVISE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert [module.backoff_delay(failures) for failures in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_answers(port: int, var_dir: Path) -> bool:
    """With the password scripts/redis-server made in the var dir (and not without it)."""
    try:
        password = (var_dir / "redis-password").read_bytes().strip()
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(64).startswith(b"-NOAUTH"):
                return False
            sock.sendall(b"AUTH " + password + b"\r\nPING\r\n")
            answer = b""
            while answer.count(b"\r\n") < 2:
                answer += sock.recv(64) or b"\r\n\r\n"
            return answer.startswith(b"+OK\r\n+PONG")
    except OSError:
        return False


def test_make_run_supervises_the_procfile_and_restarts_its_redis(supervise, tmp_path):
    run = (ROOT / "scripts" / "run").read_text()
    assert re.search(r'^exec python scripts/supervise\.py -f Procfile \\\n +--listen "gateway=\$\{FERRY_GATEWAY_HOST'
                     r':-127\.0\.0\.1\}:\$\{FERRY_GATEWAY_PORT:-8080\}" "\$\{processes\[@\]\}"$', run, re.M)

    port = free_port()
    env = {**os.environ, "FERRY_VAR_DIR": str(tmp_path), "FERRY_REDIS_PORT": str(port),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # as scripts/run: the venv's
    supervised = supervise("", "redis", cwd=ROOT, procfile=ROOT / "Procfile", env=env)
    _, pid = supervised.pid_of("redis")
    wait_until(lambda: redis_answers(port, tmp_path), what=f"redis on {port}")
    assert (tmp_path / "redis-password").stat().st_mode & 0o777 == 0o600

    os.kill(pid, signal.SIGKILL)

    index, _, _ = supervised.wait_for(r"redis exited \(signal 9, SIGKILL\); restarting in 1 s \(restart 1\)")
    _, new_pid = supervised.pid_of("redis", start=index)
    wait_until(lambda: redis_answers(port, tmp_path), what=f"the restarted redis on {port}")
    assert supervised.stop(signal.SIGINT) == 0
    wait_until(lambda: not alive(new_pid), what=f"redis {new_pid} to end")


# Answers each connection with its pid, from the socket the supervisor hands it (as the gateway does).
HELD_SOCKET_SERVER = """
import os, socket
listener = socket.socket(fileno=int(os.environ["FERRY_LISTEN_FD"]))
print("serving", flush=True)
while True:
    connection, _ = listener.accept()
    connection.sendall(b"pid %d" % os.getpid())
    connection.close()
"""


def answering_pid(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(10)
        return int(sock.recv(64).split()[1])


def test_a_held_socket_keeps_connections_waiting_while_its_process_restarts(supervise, tmp_path):
    (tmp_path / "server.py").write_text(HELD_SOCKET_SERVER)
    port = free_port()
    supervised = supervise(f"server: {PY} server.py\n", "--listen", f"server=127.0.0.1:{port}")
    _, pid = supervised.pid_of("server")
    supervised.wait_for(r"server +\| serving")
    assert answering_pid(port) == pid

    os.kill(pid, signal.SIGKILL)
    supervised.wait_for(r"server exited \(signal 9, SIGKILL\); restarting in 1 s")
    # Sent while nothing serves: queued in the supervisor's socket, answered by the next run, not refused.
    assert answering_pid(port) == supervised.pid_of("server", start=1)[1] != pid

    assert supervised.stop(signal.SIGTERM) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_listen_refuses_a_malformed_argument_and_a_taken_port(supervise):
    supervised = supervise(f"server: {SLEEPER}\n", "--listen", "server=8080")
    assert supervised.proc.wait(15) == 2
    assert "--listen 'server=8080': expected NAME=HOST:PORT" in supervised.output()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        supervised = supervise(f"server: {SLEEPER}\n", "--listen", f"server=127.0.0.1:{port}")
        assert supervised.proc.wait(15) == 1
    assert f"cannot listen on 127.0.0.1:{port} for server: Address already in use" in supervised.output()
    assert "server started" not in supervised.output()
