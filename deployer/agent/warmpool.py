"""The warm pool: standby model servers started ahead of need, so that an instance of a built-in processor
(sklearn, xgboost, lightgbm, onnx, python) starts without paying for its imports. See docs/node-agent.md
("Warm pool") and processors/modelserver/standby.py for the other side.

- Size: FERRY_WARM_POOL_SIZE (environment, else the setting of that name); 0 (off) by default, `make run` uses 1.
- Flavor: a standby can only become an instance whose interpreter, working directory and start-up
  environment (STARTUP_ENV: PYTHONPATH and the like, read when Python or a preloaded library starts) it was
  started with; the rest of the instance's environment (the service token, ...) is given at the hand-over.
  The pool learns the flavor from the newest running row with a built-in launch and remembers it in
  <var>/warm-pool/flavor.json, so an agent that never ran a built-in processor keeps no standby, and a
  restarted one refills at once.
- Hand-over (`take`): only to a standby that said it is ready; the instance's memory limit is applied to it
  first with prlimit(2), and only if what it already uses is below the limit; then the assignment (argv,
  env, cwd, the instance log's descriptor) and its answer, within HANDOFF_TIMEOUT_SECONDS. Anything else:
  the instance is spawned as usual.
- Top-up: a new standby replaces a used one once no instance is Starting (its imports would compete for
  the CPU with the instance that is coming up), at the latest TOP_UP_HOLD_MAX_SECONDS later. A standby that
  dies before it is used is replaced after a backoff (1 s, 2 s, ... 60 s).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from processors.modelserver import handoff

from . import logs, sandbox
from .launch import MARK_INSTANCE, MARK_VAR_DIR, PORT_PLACEHOLDER, LaunchSpec
from .processes import Confinement, ProcessHandle, signal_group, spawn

logger = logging.getLogger("ferry.agent")

MODULE = "processors.modelserver"
SIZE_SETTING = "FERRY_WARM_POOL_SIZE"
PRELOAD_SETTING = "FERRY_WARM_POOL_PRELOAD"
DEFAULT_SIZE = 0  # off unless asked for: `make run` asks for 1 (Procfile); each standby holds ~215 MB
HANDOFF_TIMEOUT_SECONDS = 2.0
TOP_UP_HOLD_MAX_SECONDS = 10.0
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
STOP_GRACE_SECONDS = 2.0  # a standby has nothing to finish: SIGTERM ends it at once
# Variables read once, when the interpreter or a library a standby preloads starts (import paths, the
# loader, thread pools of OpenBLAS/OpenMP/MKL, malloc, scikit-learn's and kserve's defaults): a standby must
# have been started with the same values. Others are read when used, so setting them at the hand-over works.
STARTUP_ENV = ("PYTHON", "LD_", "OMP_", "OPENBLAS_", "MKL_", "KMP_", "GOTO_", "VECLIB_", "NUMEXPR_", "MALLOC_",
               "GLIBC_", "SKLEARN_", "JOBLIB_", "KSERVE_", "NPY_", "NUMPY_", "SCIPY_")


@dataclass(frozen=True)
class Flavor:
    """What a standby shares with the instances it can become. Two flavors are equal when they run the same
    interpreter: `python` and `python3` of one virtualenv are (the same binary, found from the same bin
    directory, which is what makes Python use the virtualenv); the reconciler may run under either name."""

    executable: str = field(compare=False)
    interpreter: str  # "<directory of executable>|<the binary it resolves to>"
    cwd: str | None
    env: tuple[tuple[str, str], ...]  # the STARTUP_ENV part of the launch's env only

    @classmethod
    def of(cls, spec: LaunchSpec) -> Flavor | None:
        """The flavor of a launch of Ferry's model server, None for any other command."""
        return cls.of_launch({"argv": spec.argv, "cwd": spec.cwd, "env": spec.env})

    @classmethod
    def of_launch(cls, launch: object) -> Flavor | None:
        """The same from a row's launch as written (no LaunchSpec: that would decrypt its secrets every pass)."""
        argv = launch.get("argv") if isinstance(launch, dict) else None
        env = launch.get("env") or {} if isinstance(launch, dict) else {}
        if not isinstance(argv, list) or len(argv) < 4 or argv[1:3] != ["-m", MODULE] or not isinstance(env, dict):
            return None
        if handoff.STANDBY_FLAG in argv or not isinstance(argv[0], str):
            return None
        startup = {key: str(value) for key, value in env.items() if str(key).startswith(STARTUP_ENV)}
        if any(PORT_PLACEHOLDER in value for value in startup.values()):
            return None  # per-instance start-up environment: a standby cannot have it in advance
        return cls.make(argv[0], launch.get("cwd") or None, startup)

    @classmethod
    def make(cls, executable: str, cwd: str | None, env: dict) -> Flavor:
        interpreter = executable
        if os.sep in executable:
            interpreter = f"{os.path.dirname(os.path.abspath(executable))}|{os.path.realpath(executable)}"
        return cls(executable, interpreter, cwd, tuple(sorted(env.items())))

    def to_json(self) -> dict:
        return {"executable": self.executable, "cwd": self.cwd, "env": dict(self.env)}

    @classmethod
    def from_json(cls, data: dict) -> Flavor:
        return cls.make(str(data["executable"]), data.get("cwd"), dict(data["env"]))


@dataclass
class Standby:
    process: ProcessHandle
    channel: object  # socket.socket: the agent's end
    ready_at: float | None = None
    imports_seconds: float | None = None
    kill_at: float | None = None  # set when it is being stopped


@dataclass(frozen=True)
class Handoff:
    process: ProcessHandle
    handoff_ms: float


class WarmPool:
    def __init__(self, size: int, var_dir: Path, preload: str = ""):
        self.size = size
        self.var_dir = Path(var_dir)
        self.directory = self.var_dir / "warm-pool"
        self.log_path = self.directory / "standby.log"
        self.preload = preload
        self.flavor = self._load_flavor()
        self.standbys: list[Standby] = []
        self.stopping: list[Standby] = []
        self.failures = 0
        self.next_spawn_at = 0.0
        self.wanted_since: float | None = None
        self.closed = False
        self.log_limit = logs.max_bytes()
        self.isolation = sandbox.host_isolation()

    @classmethod
    def from_settings(cls, var_dir: Path) -> WarmPool | None:
        raw = os.environ.get(SIZE_SETTING) or getattr(settings, SIZE_SETTING, None)
        try:
            size = DEFAULT_SIZE if raw in (None, "") else int(raw)
        except ValueError:
            logger.warning("Ignored %s=%r (not a whole number); the warm pool keeps %d standby process(es)",
                           SIZE_SETTING, raw, DEFAULT_SIZE)
            size = DEFAULT_SIZE
        if size <= 0:
            return None
        preload = os.environ.get(PRELOAD_SETTING) or getattr(settings, PRELOAD_SETTING, "") or ""
        return cls(size, var_dir, preload)

    # --- what the supervisor calls every pass -------------------------------------------------------------

    def observe(self, rows: dict) -> None:
        """Takes the flavor of the newest running row of Ferry's model server, unless a running row still
        uses the current one (two flavors in use would otherwise replace the standbys back and forth)."""
        newest, in_use = None, False
        for row in rows.values():
            if row.desired != "running":
                continue
            flavor = Flavor.of_launch(row.launch)
            in_use = in_use or (flavor is not None and flavor == self.flavor)
            if flavor is not None and (newest is None or row.pk > newest[0]):
                newest = (row.pk, flavor)
        if newest is not None and not in_use:
            self._switch(newest[1])

    def step(self, now: float, busy: bool) -> None:
        """Reaps standbys that ended, reads their "ready", and tops the pool up. `busy`: an instance is starting."""
        for standby in list(self.standbys):
            self._read(standby, now)
            status = standby.process.poll()
            if status is not None:
                self.standbys.remove(standby)
                standby.channel.close()
                self._failed(now, f"Standby process {standby.process.pid} of the warm pool {status.describe()} "
                                  f"before it was used (its output is in {self.log_path})")
        self._reap_stopping(now)
        self._top_up(now, busy)
        try:
            logs.rotate_if_needed(self.log_path, self.log_limit)  # as instance logs, though it grows slowly
        except OSError as exc:
            logger.warning("Could not rotate the warm pool's log (%s)", exc)

    def next_deadline(self) -> float | None:
        deadlines = [s.kill_at for s in self.stopping if s.kill_at is not None]
        if self._short() and self.flavor is not None and not self.closed:
            deadlines.append(max(self.next_spawn_at, (self.wanted_since or 0.0) + TOP_UP_HOLD_MAX_SECONDS))
        return min(deadlines) if deadlines else None

    def processes(self) -> int:
        return len(self.standbys) + len(self.stopping)

    # --- hand-over -------------------------------------------------------------------------------------

    def take(self, spec: LaunchSpec, argv: list[str], env: dict[str, str], name: str, log_path: Path) -> Handoff | None:
        """Makes a ready standby the instance `name`; None when none fits (the caller spawns as usual)."""
        try:
            return self._take(spec, argv, env, name, log_path)
        except Exception:  # the pool only saves time: a bug here must not keep an instance from starting
            logger.exception("The warm pool failed to hand over instance %s; starting a new process", name)
            return None

    def _take(self, spec: LaunchSpec, argv: list[str], env: dict[str, str], name: str, log_path: Path):
        flavor = Flavor.of(spec)
        if flavor is None or flavor != self.flavor or self.closed:
            return None  # another flavor: `observe` switches when the current one is no longer in use
        if self.isolation.bwrap and not self._visible(argv):
            return None  # names a file the standby's sandbox does not show (a model outside the cache)
        now = time.monotonic()
        for standby in list(self.standbys):
            self._read(standby, now)
            if standby.ready_at is None or standby.process.poll() is not None:
                continue
            if spec.memory_limit_mb and not self._limit(standby, spec.memory_limit_mb, name, log_path):
                return None
            self.standbys.remove(standby)
            self.wanted_since = now
            return self._hand_over(standby, argv, env, spec.cwd, name, log_path, spec.memory_limit_mb)
        return None

    def _visible(self, argv: list[str]) -> bool:
        shown = [*sandbox.standby_view(self.var_dir)]
        return all(any(path == root or path.startswith(root.rstrip("/") + "/") for root in shown)
                   for path in sandbox.paths_named(argv, {}, None))

    def _limit(self, standby: Standby, limit_mb: int, name: str, log_path: Path) -> bool:
        """RLIMIT_DATA of the instance, set on the standby before it becomes the instance (prlimit(2)); under
        bubblewrap on the model server inside, not on bwrap."""
        pid, limit = standby.process.worker_pid(), limit_mb * 1024 * 1024
        used = _data_bytes(pid) if pid is not None else None
        if used is None or used >= limit:
            logs.write_agent_line(log_path, f"Not starting instance {name} from the warm pool: its standby process "
                                            f"already uses {(used or 0) // 2**20} MB of data, over the {limit_mb} MB "
                                            "memory limit; starting a new process")
            return False
        try:
            _soft, hard = resource.prlimit(pid, resource.RLIMIT_DATA)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)  # as limited_exec does: lowering is always allowed
            resource.prlimit(pid, resource.RLIMIT_DATA, (limit, limit))
        except PermissionError:
            pass  # a standby of another user, without CAP_SYS_RESOURCE: it sets the limit itself (the assignment)
        except OSError as exc:
            logger.warning("Could not set the memory limit of standby process %d (%s); not using it", pid, exc)
            return False
        return True

    def _hand_over(self, standby: Standby, argv, env, cwd, name: str, log_path: Path,
                   memory_limit_mb: int | None = None) -> Handoff | None:
        pid, began = standby.process.pid, time.monotonic()
        message = {"type": "assign", "name": name, "argv": argv, "env": env, "cwd": cwd, "sent_at": time.time(),
                   "memory_limit_bytes": memory_limit_mb * 1024 * 1024 if memory_limit_mb else None}
        try:
            # The instance's directory becomes the standby's user's: it runs as that user from now on.
            sandbox.prepare_work_dir(log_path.parent, standby.process.uid)
            log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                standby.channel.settimeout(HANDOFF_TIMEOUT_SECONDS)
                handoff.send(standby.channel, message, [log_fd])
            finally:
                os.close(log_fd)
            answer = self._answer(standby)
        except (OSError, handoff.ChannelClosed) as exc:
            answer = f"{type(exc).__name__}: {exc}"
        if answer != "assigned":
            logger.warning("Standby process %d did not take instance %s (%s); starting a new process", pid, name, answer)
            standby.process.signal_group(signal.SIGKILL)
            self._stop(standby, time.monotonic())
            return None
        standby.channel.close()
        handoff_ms = (time.monotonic() - began) * 1000
        waited = time.monotonic() - (standby.ready_at or began)
        logs.write_agent_line(log_path, f"Handed instance {name} to standby process {pid} of the warm pool in "
                                        f"{handoff_ms:.1f} ms (it had imported the serving libraries in "
                                        f"{standby.imports_seconds or 0:.2f} s and waited {waited:.1f} s)")
        return Handoff(standby.process, handoff_ms)

    @staticmethod
    def _answer(standby: Standby) -> str:
        while True:  # a late "ready" may still be queued before the answer
            message, fds = handoff.receive(standby.channel)
            for fd in fds:
                os.close(fd)
            if message.get("type") == "assigned":
                return "assigned"
            if message.get("type") != "ready":
                return f"unexpected answer {message!r}"

    # --- standbys ------------------------------------------------------------------------------------------

    def _top_up(self, now: float, busy: bool) -> None:
        if self.closed or self.flavor is None or not self._short():
            self.wanted_since = None
            return
        if self.wanted_since is None:
            self.wanted_since = now
        if now < self.next_spawn_at or (busy and now - self.wanted_since < TOP_UP_HOLD_MAX_SECONDS):
            return
        self._spawn(now)

    def _short(self) -> bool:
        return len(self.standbys) < self.size

    def _spawn(self, now: float) -> None:
        flavor = self.flavor
        argv = [flavor.executable, "-m", MODULE, handoff.STANDBY_FLAG] + (["--preload", self.preload] if self.preload else [])
        env = LaunchSpec(argv=argv, env=dict(flavor.env)).env_for(0, name="", var_dir=str(self.var_dir))
        for per_instance in ("PORT", MARK_INSTANCE, MARK_VAR_DIR):
            env.pop(per_instance, None)
        env[handoff.POOL_MARK] = str(self.var_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        agent_end, standby_end = handoff.channel_pair()
        uid = sandbox.fresh_uid() if self.isolation.separate_user else None
        # Its instance is not known yet: it sees every instance's directory (with a user of its own, only its
        # instance's is open to it) and keeps the pool's cwd; the hand-over gives it its HOME.
        confinement = Confinement(self.isolation, self.var_dir, uid, [self.var_dir / "instances"])
        try:
            if self.isolation.separate_user:
                sandbox.harden_var(self.var_dir)
            process = spawn(argv, env, flavor.cwd, self.log_path, None, stdin=standby_end.fileno(),
                            confinement=confinement)
        except OSError as exc:
            agent_end.close()
            self._failed(now, f"Could not start a standby process for the warm pool: {exc}")
            return
        finally:
            standby_end.close()
        agent_end.setblocking(False)
        self.standbys.append(Standby(process, agent_end))
        logs.write_agent_line(self.log_path, f"Started standby process {process.pid} for the warm pool")
        logger.info("Started standby process %d for the warm pool", process.pid)

    def _read(self, standby: Standby, now: float) -> None:
        """Takes what the standby said so far (its "ready"); a closed channel means it is ending."""
        if standby.ready_at is not None:
            return
        try:
            message, fds = handoff.receive(standby.channel)
        except (BlockingIOError, InterruptedError):
            return
        except (OSError, handoff.ChannelClosed):
            return  # it is exiting: poll() reports how
        for fd in fds:
            os.close(fd)
        if message.get("type") == "ready":
            standby.ready_at, standby.imports_seconds = now, float(message.get("imports_seconds") or 0)
            self.failures = 0
            logs.write_agent_line(self.log_path, f"Standby process {standby.process.pid} is ready (imports took "
                                                 f"{standby.imports_seconds:.2f} s)")

    def _failed(self, now: float, message: str) -> None:
        self.failures += 1
        backoff = min(BACKOFF_FIRST_SECONDS * 2 ** (self.failures - 1), BACKOFF_MAX_SECONDS)
        self.next_spawn_at = now + backoff
        logs.write_agent_line(self.log_path, f"{message}; the next one starts in {backoff:g} s")
        logger.warning("%s; the next one starts in %g s", message, backoff)

    def _switch(self, flavor: Flavor) -> None:
        logger.info("The warm pool now keeps standbys for %s (cwd %s)", flavor.executable, flavor.cwd)
        self.flavor = flavor
        self.failures, self.next_spawn_at = 0, 0.0
        now = time.monotonic()
        for standby in list(self.standbys):
            self.standbys.remove(standby)
            self._stop(standby, now)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            temporary = self.directory / "flavor.json.tmp"
            temporary.write_text(json.dumps(flavor.to_json(), indent=1))
            os.replace(temporary, self.directory / "flavor.json")
        except OSError as exc:
            logger.warning("Could not remember the warm pool's flavor (%s)", exc)

    def _load_flavor(self) -> Flavor | None:
        try:
            return Flavor.from_json(json.loads((self.directory / "flavor.json").read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("Ignored the unreadable %s (%s)", self.directory / "flavor.json", exc)
            return None

    # --- stopping --------------------------------------------------------------------------------------

    def _stop(self, standby: Standby, now: float) -> None:
        standby.channel.close()
        standby.process.signal_group(signal.SIGTERM)
        standby.kill_at = now + STOP_GRACE_SECONDS
        self.stopping.append(standby)

    def _reap_stopping(self, now: float) -> None:
        for standby in list(self.stopping):
            if standby.process.poll() is not None:
                self.stopping.remove(standby)
            elif now >= standby.kill_at:
                standby.process.signal_group(signal.SIGKILL)
                standby.kill_at = now + STOP_GRACE_SECONDS

    def stop(self) -> None:
        """The agent is stopping: every standby gets SIGTERM now; `step` reaps them, SIGKILL after 2 s."""
        self.closed = True
        now = time.monotonic()
        for standby in list(self.standbys):
            self.standbys.remove(standby)
            self._stop(standby, now)

    def kill(self) -> None:
        for standby in self.standbys + self.stopping:
            standby.process.signal_group(signal.SIGKILL)

    def close(self) -> None:
        """Last resort when the agent exits: nothing of the pool outlives it."""
        self.stop()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self.stopping and time.monotonic() < deadline:
            self._reap_stopping(time.monotonic())
            time.sleep(0.02)
        self.kill()
        for standby in self.stopping:
            standby.process.poll()
        self.stopping.clear()


def _data_bytes(pid: int) -> int | None:
    """VmData: what RLIMIT_DATA counts (private writable mappings)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None
