"""One instance's lifecycle: start, probe, restart with backoff, stop gracefully. No database access here.

The supervisor calls `step(now)` every pass with the latest row (or None when the row is gone); `step`
compares what the row wants with what runs and moves one step closer, never blocking. `observed()` is what
the supervisor writes back to the row.

    Pending -> Starting -> Running <-> Unready
    Starting/Running/Unready -exit-> CrashLoopBackOff -backoff-> Starting
    any -desired stopped, row gone, agent stopping-> Terminating -exit-> Terminated
    Pending -command missing / not allowed / bad launch spec-> Failed (no retry until the launch changes or
                                                              a restart is requested)
"""

from __future__ import annotations

import logging
import shlex
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path

from django.utils import timezone

from deployer.models import LocalInstanceState as State

from . import logs, sandbox, statefiles
from .launch import DEFAULT_GRACE_PERIOD_SECONDS, InvalidLaunch, LaunchSpec, limits_note, pick_free_port
from .probes import Prober
from .processes import Confinement, ExitStatus, ProcessHandle, spawn
from .warmpool import WarmPool

logger = logging.getLogger("ferry.agent")

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
BACKOFF_RESET_AFTER_SECONDS = 60.0  # a process that ran this long before failing starts the backoff over
UNREADY_AFTER_FAILED_PROBES = 3  # one slow answer does not take an instance out of routing
PROBE_EVERY_SECONDS_STARTING = 0.5
# An instance handed to a warm-pool standby is ready some 0.1 s later: a 0.5 s probe period would be most of
# its cold start. Refused connections cost nothing, so it is probed this often until it is ready.
PROBE_EVERY_SECONDS_STARTING_POOLED = 0.05
PROBE_EVERY_SECONDS_RUNNING = 1.0
STOPPING_CHECK_SECONDS = 0.2
# Between reporting a ready instance not ready and sending it SIGTERM: the gateway stops routing to it first.
ROUTING_GRACE_SECONDS = 1.0
PORT_RETRIES = 3  # the port we picked was taken before the instance bound it: start again on another one


class Stopping(Enum):
    STOP = "to stop it"
    RESTART = "to restart it"
    READY_TIMEOUT = "because it was not ready in time"


@dataclass
class Termination:
    """A stop in progress: SIGTERM at `sigterm_at`, SIGKILL `grace` seconds after it if still running."""

    why: Stopping
    grace: float
    sigterm_at: float
    kill_at: float | None = None  # set when SIGTERM is sent
    killed: bool = False


@dataclass
class Context:
    """What every instance shares: where its files go, the prober, which ports are already given out, and the
    warm pool (None: disabled, or `--once`)."""

    instances_dir: Path
    var_dir: str
    prober: Prober
    ports_in_use: Callable[[], set[int]]
    pool: WarmPool | None = None
    isolation: sandbox.Isolation = field(default_factory=sandbox.host_isolation)


class InstanceRuntime:
    def __init__(self, name: str, context: Context):
        self.name = name
        self.context = context
        self.log_path = statefiles.log_path(context.instances_dir, name)
        self.row = None
        self.row_pk: int | None = None
        self.process: ProcessHandle | None = None
        self.port: int | None = None
        # observed, as reported
        self.state = State.PENDING
        self.ready = False
        self.restart_count = 0
        self.last_exit_code: int | None = None
        self.last_exit_reason = ""
        self.started_at: datetime | None = None
        self.observed_restart_generation = 0
        # bookkeeping of the current or last process
        self.health_path = "/"
        self.grace_seconds = DEFAULT_GRACE_PERIOD_SECONDS
        self.memory_limit_mb: int | None = None
        self.ready_timeout_seconds = 0.0
        self.probe_every_starting = PROBE_EVERY_SECONDS_STARTING
        self.started_mono = 0.0
        self.ready_deadline = 0.0
        self.next_probe_at = 0.0
        self.failed_probes = 0
        self.ever_ready = False
        self.port_retries = 0
        self.termination: Termination | None = None
        self.failures = 0  # consecutive, for the backoff
        self.backoff_seconds = 0.0
        self.restart_at: float | None = None
        self.failed_launch: object = None

    # --- the row ---------------------------------------------------------------------------------------

    def bind(self, row) -> None:
        """Follows the latest row; a new row under the same name (pk changed) brings its own counters."""
        if row is not None and row.pk != self.row_pk:
            self.row_pk = row.pk
            self.restart_count = row.restart_count
            self.last_exit_code = row.last_exit_code
            self.last_exit_reason = row.last_exit_reason
            self.started_at = row.started_at
            self.observed_restart_generation = row.observed_restart_generation
        self.row = row

    def observed(self) -> dict:
        running = self.process is not None
        return {
            "state": self.state,
            "ready": self.ready,
            "pid": self.process.pid if running else None,
            "port": self.port if running else None,
            "restart_count": self.restart_count,
            "last_exit_code": self.last_exit_code,
            "last_exit_reason": self.last_exit_reason[:255],
            "started_at": self.started_at,
            "observed_restart_generation": self.observed_restart_generation,
            "log_path": str(self.log_path),
        }

    def wants_stop(self, shutting_down: bool) -> bool:
        return shutting_down or self.row is None or self.row.desired != "running"

    def restart_requested(self) -> bool:
        return self.row is not None and self.row.restart_generation > self.observed_restart_generation

    def next_deadline(self) -> float | None:
        """When this instance next needs a step (probe, ready timeout, SIGKILL, restart), whatever the poll."""
        if self.process is None:
            return self.restart_at
        if self.termination is not None:  # watch closely for the exit, whatever the poll interval
            termination = self.termination
            due = termination.sigterm_at if termination.kill_at is None else termination.kill_at
            return min(due, time.monotonic() + STOPPING_CHECK_SECONDS)
        deadlines = [self.next_probe_at] + ([self.ready_deadline] if self.state == State.STARTING else [])
        return min(deadlines)

    def draining_but_wanted(self, shutting_down: bool) -> bool:
        """A stop in progress that the row no longer asks for: a request woke the service from zero while its
        last instance drained. Waiting for that exit (routing grace, drain, up to the grace period) before
        starting would hold the request all that time."""
        termination = self.termination
        return (self.process is not None and termination is not None and termination.why is Stopping.STOP
                and not self.wants_stop(shutting_down))

    def split_off_draining(self) -> InstanceRuntime:
        """Gives the draining process to a runtime of its own, without a row, so it finishes its stop (the
        gateway no longer routes to it; it completes what it holds) while this one starts a new process at
        once. The new process takes over the state file: if the agent dies meanwhile, the next one stops the
        draining process as a stray, which is what was wanted of it anyway."""
        draining = InstanceRuntime(f"{self.name}~draining-{self.process.pid}", self.context)
        draining.log_path = self.log_path  # its last lines belong with the instance's
        draining.process, draining.port, draining.termination = self.process, self.port, self.termination
        draining.state, draining.grace_seconds = State.TERMINATING, self.grace_seconds
        self.process, self.termination = None, None
        self.state, self.ready, self.restart_at = State.PENDING, False, None
        self._record(f"Instance {self.name} is wanted again while pid {draining.process.pid} drains; "
                     f"starting a new process instead of waiting for that one to exit")
        return draining

    # --- one step ------------------------------------------------------------------------------------

    def step(self, now: float, *, shutting_down: bool = False, grace_cap: float | None = None) -> None:
        if self.process is not None:
            status = self.process.poll()
            if status is not None:
                self._handle_exit(status, now)
        if self.process is not None:
            self._watch(now, shutting_down, grace_cap)
        else:
            self._act_without_process(now, shutting_down)

    def _watch(self, now: float, shutting_down: bool, grace_cap: float | None) -> None:
        if self.wants_stop(shutting_down):
            self._terminate(Stopping.STOP, now, grace_cap)
        elif self.restart_requested() and self.termination is None:
            self._terminate(Stopping.RESTART, now)
        if self.termination is not None:
            self._signal_when_due(self.termination, now)
            return
        self._check_readiness(now)

    def _act_without_process(self, now: float, shutting_down: bool) -> None:
        if self.wants_stop(shutting_down):
            if not (shutting_down and self.state == State.FAILED):  # the agent stopping changes nothing there
                self.state, self.ready, self.restart_at = State.TERMINATED, False, None
            return
        if self.restart_requested():
            # Nothing runs, so a requested restart means: start now, forgetting earlier failures.
            self.observed_restart_generation = self.row.restart_generation
            self.restart_at, self.failed_launch, self.failures = None, None, 0
        if self.state == State.FAILED and self.row.launch == self.failed_launch:
            return
        if self.restart_at is not None and now < self.restart_at:
            self.state = State.CRASH_LOOP
            return
        self._start(now)

    # --- starting ------------------------------------------------------------------------------------

    def _start(self, now: float) -> None:
        try:
            spec = LaunchSpec.from_json(self.row.launch)
        except InvalidLaunch as exc:
            self._fail(f"invalid launch spec: {exc}")
            return
        port = pick_free_port(self.context.ports_in_use())
        argv = spec.argv_for(port)
        self._record(f"Starting instance {self.name} on port {port}: {shlex.join(argv)}", quiet=True)
        for line in limits_note(spec):
            logs.write_agent_line(self.log_path, line)
        isolation, instance_dir = self.context.isolation, self.log_path.parent
        uid = sandbox.uid_for(self.name) if isolation.separate_user else None
        try:
            if isolation.separate_user:
                sandbox.harden_var(Path(self.context.var_dir))
            work = sandbox.prepare_work_dir(instance_dir, uid)
        except OSError as exc:
            self._fail(f"could not prepare its directory: {exc}")
            return
        # A custom command without a model runs in the temporary directory: its own directory instead.
        cwd = str(work) if spec.cwd in (None, tempfile.gettempdir()) else spec.cwd
        env = spec.env_for(port, name=self.name, var_dir=self.context.var_dir, home=str(work))
        pool = self.context.pool
        handoff = pool.take(spec, argv, env, self.name, self.log_path) if pool is not None else None
        try:
            engine_ro, engine_rw = sandbox.engine_view(Path(self.context.var_dir), spec.read_only_dirs,
                                                       spec.shared_dirs, shared_by_users=uid is not None)
        except (OSError, ValueError) as exc:
            self._fail(f"could not prepare its engine's directories: {exc}")
            return
        confinement = Confinement(isolation, Path(self.context.var_dir), uid, [instance_dir, *engine_rw],
                                  read_only_dirs=engine_ro)
        try:
            process = handoff.process if handoff else spawn(argv, env, cwd, self.log_path, spec.memory_limit_mb,
                                                            confinement=confinement)
        except OSError as exc:  # command missing, not executable, bad cwd: retrying will not help
            self._fail(f"could not start: {exc}")
            return
        for line in sandbox.notes(isolation, process.uid):
            logs.write_agent_line(self.log_path, line)
        self.probe_every_starting = PROBE_EVERY_SECONDS_STARTING_POOLED if handoff else PROBE_EVERY_SECONDS_STARTING
        self._took_off(process, port, spec, now)

    def _took_off(self, process: ProcessHandle, port: int, spec: LaunchSpec, now: float) -> None:
        restarted_after = self.backoff_seconds if self.restart_at is not None else None
        self.process, self.port = process, port
        self.state, self.ready, self.ever_ready = State.STARTING, False, False
        self.started_at, self.started_mono = timezone.now(), now
        self.health_path, self.grace_seconds = spec.health_path, spec.grace_period_seconds
        self.memory_limit_mb, self.ready_timeout_seconds = spec.memory_limit_mb, spec.ready_timeout_seconds
        self.ready_deadline, self.next_probe_at, self.failed_probes = now + spec.ready_timeout_seconds, now, 0
        self.observed_restart_generation = self.row.restart_generation
        self.restart_at = None
        statefiles.write_record(self.context.instances_dir, statefiles.ProcessRecord(
            name=self.name, pid=process.pid, create_time=process.create_time, argv=spec.argv_for(port), port=port,
            started_at=self.started_at.isoformat(), grace_period_seconds=spec.grace_period_seconds,
        ))
        if restarted_after is None:
            self._record(f"Started instance {self.name} (pid {process.pid}, port {port})")
        else:
            self._record(f"Instance {self.name} {self.last_exit_reason} and was restarted after "
                         f"{restarted_after:g} s (pid {process.pid}, port {port})")

    def _fail(self, reason: str) -> None:
        self.state, self.ready = State.FAILED, False
        self.last_exit_code, self.last_exit_reason = None, reason
        self.failed_launch = self.row.launch
        self._record(f"Could not start instance {self.name}: {reason}", level=logging.WARNING)

    def adopt(self, process: ProcessHandle, record: statefiles.ProcessRecord, now: float) -> None:
        """Takes over a process an earlier agent started; the next probe confirms its readiness."""
        self.process, self.port = process, record.port
        self.grace_seconds = record.grace_period_seconds
        started_at = datetime.fromisoformat(record.started_at)
        self.started_at = self.started_at or started_at
        self.started_mono = now - max(0.0, (timezone.now() - started_at).total_seconds())
        was_ready = self.row is not None and self.row.ready
        self.state = State.RUNNING if was_ready else State.STARTING
        self.ready = self.ever_ready = was_ready
        self.ready_deadline = self.next_probe_at = now
        try:
            spec = LaunchSpec.from_json(self.row.launch) if self.row is not None else None
        except InvalidLaunch:
            spec = None
        if spec is not None:
            self.health_path, self.memory_limit_mb = spec.health_path, spec.memory_limit_mb
            self.ready_timeout_seconds = spec.ready_timeout_seconds
            self.ready_deadline = max(now, self.started_mono + spec.ready_timeout_seconds)
        self._record(f"Adopted instance {self.name} (pid {process.pid}, port {record.port}) from an earlier agent")

    def lost_while_away(self, now: float) -> None:
        """Its process ended while no agent watched: a failure like any other, with the code unknown."""
        self.last_exit_code = None
        self.last_exit_reason = self._exit_reason(ExitStatus(), "exited while the agent was not running (code unknown)")
        if not self.wants_stop(False):
            self._schedule_restart(now, ran_seconds=0.0)

    # --- readiness -----------------------------------------------------------------------------------

    def _check_readiness(self, now: float) -> None:
        prober, pid = self.context.prober, self.process.pid
        result = prober.result(self.name, pid)
        if result is True:
            self._probe_passed()
        elif result is False:
            self._probe_failed()
        if self.state == State.STARTING and now >= self.ready_deadline:
            self._terminate(Stopping.READY_TIMEOUT, now)
            return
        if now >= self.next_probe_at and not prober.in_flight(self.name, pid):
            prober.submit(self.name, pid, self.port, self.health_path)
            starting = self.state == State.STARTING
            self.next_probe_at = now + (self.probe_every_starting if starting else PROBE_EVERY_SECONDS_RUNNING)

    def _probe_passed(self) -> None:
        self.failed_probes = 0
        if self.state != State.RUNNING:
            again = " again" if self.ever_ready else ""
            self.state, self.ready, self.ever_ready, self.port_retries = State.RUNNING, True, True, 0
            self._record(f"Instance {self.name} became ready{again} (GET {self.health_path} answered 200)")

    def _probe_failed(self) -> None:
        if self.state not in (State.RUNNING, State.UNREADY):
            return  # still starting: the ready timeout decides
        self.failed_probes += 1
        if self.state == State.RUNNING and self.failed_probes >= UNREADY_AFTER_FAILED_PROBES:
            self.state, self.ready = State.UNREADY, False
            self._record(f"Instance {self.name} became unready: GET {self.health_path} failed "
                         f"{self.failed_probes} times in a row", level=logging.WARNING)

    # --- stopping and exits --------------------------------------------------------------------------

    def _terminate(self, why: Stopping, now: float, grace_cap: float | None = None) -> None:
        """Reports the instance not ready now; SIGTERM follows once routing had time to move away."""
        grace = self.grace_seconds if grace_cap is None else min(self.grace_seconds, grace_cap)
        termination = self.termination
        if termination is not None:
            if why is Stopping.STOP:
                termination.why = Stopping.STOP  # a stop outranks a restart or a ready timeout
            termination.grace = min(termination.grace, grace)
            if termination.kill_at is not None:
                termination.kill_at = min(termination.kill_at, now + grace)
            return
        routing_grace = ROUTING_GRACE_SECONDS if self.ready else 0.0
        self.termination = Termination(why=why, grace=grace, sigterm_at=now + routing_grace)
        self.state, self.ready = State.TERMINATING, False

    def _signal_when_due(self, termination: Termination, now: float) -> None:
        pid = self.process.pid
        if termination.kill_at is None and now >= termination.sigterm_at:
            self.process.signal_group(signal.SIGTERM)
            termination.kill_at = now + termination.grace
            self._record(f"Sent SIGTERM to instance {self.name} (pid {pid}) {termination.why.value}; "
                         f"SIGKILL follows after {termination.grace:g} s")
        elif termination.kill_at is not None and not termination.killed and now >= termination.kill_at:
            self.process.signal_group(signal.SIGKILL)
            termination.killed = True
            self._record(f"Sent SIGKILL to instance {self.name} (pid {pid}): "
                         f"still running {termination.grace:g} s after SIGTERM")

    def _handle_exit(self, status: ExitStatus, now: float) -> None:
        self.process.kill_leftovers()
        self.process, self.ready, self.failed_probes = None, False, 0
        self.context.prober.forget(self.name)
        statefiles.remove_record(self.context.instances_dir, self.name)
        output = logs.output_of_last_run(self.log_path)
        stopping = self.termination.why if self.termination is not None else None
        self.termination = None
        reason = self._exit_reason(status, status.describe(), output)
        if stopping is Stopping.READY_TIMEOUT:
            reason = f"was not ready within {self.ready_timeout_seconds:g} s and was stopped ({reason})"
        self.last_exit_code, self.last_exit_reason = status.code, reason
        if stopping is Stopping.STOP:
            self.state = State.TERMINATED
            self._record(f"Stopped instance {self.name} ({reason})")
        elif stopping is Stopping.RESTART:
            self.state, self.restart_at = State.PENDING, None
            self._record(f"Stopped instance {self.name} for a requested restart ({reason})")
        elif not self.ever_ready and logs.port_was_taken(output) and self.port_retries < PORT_RETRIES:
            self.port_retries += 1
            self.state, self.restart_at = State.PENDING, None
            self._record(f"Instance {self.name} could not bind port {self.port}; starting it on another port")
        else:
            self._schedule_restart(now, ran_seconds=now - self.started_mono)

    def _exit_reason(self, status: ExitStatus, described: str, output: str | None = None) -> str:
        if output is None:
            output = logs.output_of_last_run(self.log_path)
        clean_exit = status.code == 0 and status.signal is None
        if self.memory_limit_mb and not clean_exit and logs.ran_out_of_memory(output):
            return f"out of memory: exceeded {self.memory_limit_mb} MB limit ({described})"
        return described

    def _schedule_restart(self, now: float, ran_seconds: float) -> None:
        if ran_seconds >= BACKOFF_RESET_AFTER_SECONDS:
            self.failures = 0
        self.failures += 1
        self.restart_count += 1
        self.backoff_seconds = min(BACKOFF_FIRST_SECONDS * 2 ** (self.failures - 1), BACKOFF_MAX_SECONDS)
        self.restart_at = now + self.backoff_seconds
        self.state = State.CRASH_LOOP
        self._record(f"Instance {self.name} {self.last_exit_reason}; restarting in {self.backoff_seconds:g} s",
                     level=logging.WARNING)

    def _record(self, message: str, level: int = logging.INFO, quiet: bool = False) -> None:
        """Says it in the instance's log, and (unless quiet) in the agent's."""
        logs.write_agent_line(self.log_path, message)
        if not quiet:
            logger.log(level, message)
