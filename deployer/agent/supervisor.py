"""The node agent's loop: read the rows, step every instance, write back what changed.

Every pass (each `poll_interval`, or at once when woken by Redis, a probe result or a signal):
  1. load every LocalInstance row (one query);
  2. step each instance towards what its row wants (start, probe, restart, stop); rows that vanished leave
     their processes as orphans, which are stopped the same way;
  3. write the observed fields that changed, enqueue a reconcile of the service when state or readiness
     changed, and refresh heartbeat_at of every row every few seconds;
  4. rotate instance logs that grew past the limit.
On start the agent first adopts the processes an earlier agent left running (`process.json`) and stops
marked processes nothing describes. On SIGTERM or SIGINT it stops every instance in parallel and exits.
The warm pool (warmpool.py) keeps standby model servers for instances of the built-in processors; it is
stepped after the instances every pass, and stopped with them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from pathlib import Path

import psutil
from django import db
from django.conf import settings
from django.utils import timezone

from deployer.models import LocalInstance
from deployer.models import LocalInstanceState as State
from processors.modelserver.handoff import POOL_MARK

from . import logs, statefiles
from .instance import Context, InstanceRuntime
from .probes import Prober
from .processes import ProcessHandle, marked_processes, signal_group
from .wake import ReconcileNotifier, RedisWakeListener, Waker
from .warmpool import WarmPool

logger = logging.getLogger("ferry.agent")

HEARTBEAT_EVERY_SECONDS = 5.0
STRAY_GRACE_SECONDS = 5.0
DATABASE_RETRY_SECONDS = 2.0
# The local driver publishes its wake-up inside the transaction that writes the rows (deployer/drivers/
# local.py), so a pass right at the wake-up can read the rows before they are committed and miss a new
# instance until the next poll (measured: 0.3-0.5 s of a cold start). Looking again shortly after costs a
# query or two and catches it; with the publish moved after the commit these looks find nothing new.
LOOK_AGAIN_AFTER_WAKE_SECONDS = (0.05, 0.2)
OBSERVED_FIELDS = ("state", "ready", "pid", "port", "restart_count", "last_exit_code", "last_exit_reason",
                   "started_at", "observed_restart_generation", "log_path")


class AgentAlreadyRunning(RuntimeError):
    pass


class Supervisor:
    def __init__(self, var_dir: Path, poll_interval: float = 0.5, shutdown_grace: float | None = None):
        self.var_dir = Path(var_dir).resolve()
        self.instances_dir = self.var_dir / "instances"
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self.waker = Waker()
        self.prober = Prober(on_result=self.waker.wake)
        self.context = Context(self.instances_dir, str(self.var_dir), self.prober, self._ports_in_use)
        self.pool: WarmPool | None = None
        self.notifier = ReconcileNotifier()
        self.listener: RedisWakeListener | None = None
        self.runtimes: dict[str, InstanceRuntime] = {}
        self.written: dict[int, dict] = {}  # row pk -> observed fields as last written
        self.last_heartbeat = float("-inf")
        self.log_limit = logs.max_bytes()
        self.stop_requested = False
        self.kill_requested = False
        self.database_error: str | None = None
        self.look_again_at: list[float] = []
        self._lock_fd: int | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    def run(self, once: bool = False) -> None:
        self._take_lock()
        self.notifier.start()
        try:
            if not once:
                self._install_signal_handlers()
                # Not with --once: the agent exits at once, and its standbys would exit with it.
                self.pool = self.context.pool = WarmPool.from_settings(self.var_dir)
            self.recover()
            self.run_pass()
            if once:
                return
            self._start_listener()
            logger.info("Started the node agent (instances in %s, polling every %g s)",
                        self.instances_dir, self.poll_interval)
            self._loop()
        finally:
            self._close()

    def _loop(self) -> None:
        announced = False
        while not (self.stop_requested and not self._anything_running()):
            self.waker.wait(self._time_to_wait())
            if self.stop_requested and not announced:
                announced = True
                logger.info("Node agent was asked to stop; stopping %d running instance(s)", self._count_running())
                if self.pool is not None:
                    self.pool.stop()
            self.run_pass()
        logger.info("Stopped the node agent; no instance is left running")

    def _install_signal_handlers(self) -> None:
        def request_stop(signum, frame):  # noqa: ARG001 - only flags and a wake-up: safe in a handler
            if self.stop_requested:
                self.kill_requested = True  # asked twice: do not wait for grace periods
            self.stop_requested = True
            self.waker.wake()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def _start_listener(self) -> None:
        if settings.REDIS_URL:
            self.listener = RedisWakeListener(settings.REDIS_URL, self._woken_by_driver)
            self.listener.start()

    def _woken_by_driver(self) -> None:
        """On the listener's thread: a list replaced whole (one assignment), read by the loop."""
        now = time.monotonic()
        self.look_again_at = [now + delay for delay in LOOK_AGAIN_AFTER_WAKE_SECONDS]
        self.waker.wake()

    def _take_lock(self) -> None:
        """Two agents on one var dir would each start every instance: the second refuses to run."""
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.instances_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AgentAlreadyRunning(f"another node agent is already running for {self.var_dir}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd  # not inherited by instances (close_fds), so it dies with this process

    def _close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        if self.pool is not None:
            self.pool.close()
        self.prober.close()
        self.notifier.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    # --- recovery ------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Adopts what an earlier agent left running; stops marked processes nothing describes."""
        rows = self._load_rows_patiently()
        now = time.monotonic()
        adopted_groups = set()
        for record in statefiles.read_records(self.instances_dir):
            runtime = InstanceRuntime(record.name, self.context)
            runtime.bind(rows.get(record.name))
            process = ProcessHandle.adopt(record.pid, record.create_time)
            if process is not None:
                runtime.adopt(process, record, now)
                adopted_groups.add(record.pid)
                self.runtimes[record.name] = runtime
                continue
            statefiles.remove_record(self.instances_dir, record.name)
            if runtime.row is not None:
                runtime.lost_while_away(now)
                self.runtimes[record.name] = runtime
        self._stop_strays(adopted_groups)

    def _load_rows_patiently(self) -> dict:
        """Without the rows the agent cannot tell an orphan from a wanted instance: it waits for them."""
        while (rows := self._load_rows()) is None:
            if self.stop_requested:
                return {}
            self.waker.wait(DATABASE_RETRY_SECONDS)
        return rows

    def _stop_strays(self, adopted_groups: set[int]) -> None:
        instances = [p for p in marked_processes(str(self.var_dir)) if _group_of(p) not in adopted_groups]
        # Standbys an earlier agent's warm pool left (they exit by themselves once their channel closes, but
        # not while still importing), or that became an instance no state file describes.
        standbys = [p for p in marked_processes(str(self.var_dir), POOL_MARK)
                    if _group_of(p) not in adopted_groups and p not in instances]
        strays = instances + standbys
        groups = {group for group in map(_group_of, strays) if group is not None}
        if not groups:
            return
        for group in groups:
            signal_group(group, signal.SIGTERM)
        _gone, alive = psutil.wait_procs(strays, timeout=STRAY_GRACE_SECONDS)
        for group in {_group_of(process) for process in alive} - {None}:
            signal_group(group, signal.SIGKILL)
        if instances:
            logger.warning("Stopped %d stray instance process(es) that no state file described (pids %s)",
                           len(instances), ", ".join(str(process.pid) for process in instances))
        if standbys:
            logger.info("Stopped %d standby process(es) an earlier agent's warm pool left (pids %s)",
                        len(standbys), ", ".join(str(process.pid) for process in standbys))

    # --- one pass ------------------------------------------------------------------------------------

    def run_pass(self) -> None:
        db.close_old_connections()  # drops a broken or expired connection; the next query reconnects
        now = time.monotonic()
        rows = self._load_rows()
        if rows is not None:  # a failed query says nothing about which rows exist: keep the last ones
            self._bind(rows)
            if self.pool is not None:
                self.pool.observe(rows)
        grace_cap = self.shutdown_grace if self.stop_requested else None
        self._split_off_draining()
        for runtime in list(self.runtimes.values()):
            self._step(runtime, now, grace_cap)
        self._step_pool(now)
        self._forget_stopped_orphans()
        self._rotate_logs()
        self._write_observed()
        self._heartbeat(now)

    def _split_off_draining(self) -> None:
        for runtime in list(self.runtimes.values()):
            if runtime.draining_but_wanted(self.stop_requested):
                draining = runtime.split_off_draining()
                self.runtimes[draining.name] = draining

    def _step(self, runtime: InstanceRuntime, now: float, grace_cap: float | None) -> None:
        try:
            runtime.step(now, shutting_down=self.stop_requested, grace_cap=grace_cap)
            if self.kill_requested and runtime.process is not None:
                runtime.process.signal_group(signal.SIGKILL)
        except Exception:  # one broken instance must not stop the agent from looking after the others
            logger.exception("Failed to look after instance %s", runtime.name)

    def _step_pool(self, now: float) -> None:
        if self.pool is None:
            return
        try:
            if self.kill_requested:
                self.pool.kill()
            busy = any(runtime.state == State.STARTING for runtime in self.runtimes.values())
            self.pool.step(now, busy)
        except Exception:  # the pool only saves time: instances are started without it if it breaks
            logger.exception("Failed to look after the warm pool")

    def _load_rows(self) -> dict | None:
        try:
            rows = {row.name: row for row in LocalInstance.objects.all()}
        except db.DatabaseError as exc:
            if str(exc) != self.database_error:
                logger.warning("Could not read the instance rows (%s); retrying", str(exc).strip())
                self.database_error = str(exc)
            return None
        if self.database_error is not None:
            logger.info("Read the instance rows again after a database error")
            self.database_error = None
        return rows

    def _bind(self, rows: dict) -> None:
        for name, row in rows.items():
            if name not in self.runtimes:
                self.runtimes[name] = InstanceRuntime(name, self.context)
            self.runtimes[name].bind(row)
        for name, runtime in self.runtimes.items():
            if name not in rows:
                runtime.bind(None)

    def _forget_stopped_orphans(self) -> None:
        for name, runtime in list(self.runtimes.items()):
            if runtime.row is None and runtime.process is None:
                del self.runtimes[name]
        live_pks = {runtime.row.pk for runtime in self.runtimes.values() if runtime.row is not None}
        self.written = {pk: fields for pk, fields in self.written.items() if pk in live_pks}

    def _write_observed(self) -> None:
        for runtime in self.runtimes.values():
            row = runtime.row
            if row is None:
                continue
            observed = runtime.observed()
            before = self.written.get(row.pk) or {field: getattr(row, field) for field in OBSERVED_FIELDS}
            changes = {field: value for field, value in observed.items() if before.get(field) != value}
            if not changes:
                continue
            try:
                LocalInstance.objects.filter(pk=row.pk).update(**changes)
            except db.DatabaseError as exc:
                logger.warning("Could not write the state of instance %s (%s)", runtime.name, exc)
                return
            self.written[row.pk] = observed
            if "state" in changes or "ready" in changes:
                self.notifier.notify(row.service_id)

    def _heartbeat(self, now: float) -> None:
        if now - self.last_heartbeat < HEARTBEAT_EVERY_SECONDS:
            return
        pks = [runtime.row.pk for runtime in self.runtimes.values() if runtime.row is not None]
        try:
            if pks:
                LocalInstance.objects.filter(pk__in=pks).update(heartbeat_at=timezone.now())
            self.last_heartbeat = now
        except db.DatabaseError as exc:
            logger.warning("Could not write the heartbeat (%s)", exc)

    def _rotate_logs(self) -> None:
        for runtime in self.runtimes.values():
            if runtime.process is None:
                continue
            try:
                logs.rotate_if_needed(runtime.log_path, self.log_limit)
            except OSError as exc:
                logger.warning("Could not rotate the log of instance %s (%s)", runtime.name, exc)

    # --- helpers -------------------------------------------------------------------------------------

    def _time_to_wait(self) -> float:
        """The poll interval, or less when an instance has a timer due sooner (probe, SIGKILL, restart)."""
        if self.stop_requested:
            return 0.1
        deadlines = [runtime.next_deadline() for runtime in self.runtimes.values()]
        now = time.monotonic()
        deadlines += [due for due in self.look_again_at if due > now][:1]  # never written here: see the setter
        if self.pool is not None:
            deadlines.append(self.pool.next_deadline())
        deadlines = [deadline for deadline in deadlines if deadline is not None]
        wait = self.poll_interval
        if deadlines:
            wait = min(wait, max(0.05, min(deadlines) - time.monotonic()))
        return wait

    def _ports_in_use(self) -> set[int]:
        return {runtime.port for runtime in self.runtimes.values() if runtime.process is not None and runtime.port}

    def _anything_running(self) -> bool:
        pool_processes = self.pool.processes() if self.pool is not None else 0
        return pool_processes > 0 or any(runtime.process is not None for runtime in self.runtimes.values())

    def _count_running(self) -> int:
        return sum(runtime.process is not None for runtime in self.runtimes.values())


def _group_of(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except ProcessLookupError:
        return None
