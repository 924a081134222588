"""The status a service shows, derived (purely) from what is desired and what is observed."""

from dataclasses import dataclass
from datetime import datetime, timedelta

# The node agent starts its backoff over for a process that ran this long before it failed
# (deployer/agent/instance.py, BACKOFF_RESET_AFTER_SECONDS): a crash after a shorter run follows another one.
CRASH_LOOP_WINDOW = timedelta(seconds=60)
FAILING, RESTARTING = "failing", "restarting"


def crash_verdict(state: str, restart_count: int, started_at: datetime | None, exited_at: datetime | None,
                  failing_before: bool = False) -> str:
    """FAILING (the service is Degraded, Failed when nothing else serves), RESTARTING (one crash: an event,
    the service keeps its phase) or "" for an instance that is not down after an exit.

    The agent (and the kubelet) report CrashLoopBackOff while waiting to restart after any exit, the first
    one included. A crash loop is a crash of a process that was itself a restart after a crash and ran less
    than CRASH_LOOP_WINDOW: what the agent's backoff counts as consecutive failures. `started_at` is when the
    process that exited started, `exited_at` when its exit was seen (unknown: counted as a short run).
    An instance starting again after a crash is still RESTARTING, unless the service was failing from crashes
    (`failing_before`): then it is the next turn of the loop."""
    if state == "Failed":
        return FAILING  # cannot be started at all: no restart will fix it
    if state == "Starting" and restart_count >= 1:
        return "" if failing_before else RESTARTING
    if state != "CrashLoopBackOff":
        return ""
    if restart_count < 2:
        return RESTARTING
    if started_at is not None and exited_at is not None and exited_at - started_at >= CRASH_LOOP_WINDOW:
        return RESTARTING
    return FAILING


def restart_message(name: str, exit_reason: str, restart_count: int) -> str:
    """'Instance X exited (killed by signal 9 (SIGKILL)) and was restarted (restarts: 1)', '... exited (code 3) ...'."""
    reason = exit_reason.removeprefix("exited with ").removeprefix("exited ").strip() or "code unknown"
    return f"Instance {name} exited ({reason}) and was restarted (restarts: {restart_count})"


@dataclass(frozen=True)
class StatusInput:
    running: bool
    deleting: bool
    expected: int  # instances the desired slots ask for
    ready: int  # ready instances among the desired slots
    live: int  # live instances of any version (including ones being drained)
    crash_looping: list[str]  # instance names in CrashLoopBackOff or Failed, with reasons
    new_version_rolling: bool  # a version with traffic is not fully ready while an older one still serves
    first_rollout: bool  # the service has never been Running
    restarting: tuple[str, ...] = ()  # instances waiting to restart after one crash, with reasons


@dataclass(frozen=True)
class Status:
    phase: str
    ready: bool
    progressing: bool
    degraded: bool
    reason: str
    message: str


def derive_status(s: StatusInput) -> Status:
    if s.deleting:
        return Status("Deleting", False, True, False, "Deleting", f"Stopping {s.live} instance(s)")
    if not s.running:
        if s.live:
            return Status("Stopped", False, True, False, "Stopping", f"Stopping {s.live} instance(s)")
        return Status("Stopped", False, False, False, "Stopped", "Stopped on request")
    if s.crash_looping:
        return Status("Failed" if s.ready == 0 else "Running", s.ready > 0 and s.ready >= s.expected, True, True,
                      "InstancesFailing", "; ".join(s.crash_looping))
    if s.ready >= s.expected and s.live == s.ready:
        return Status("Running", True, False, False, "AllInstancesReady", f"{s.ready}/{s.expected} instances ready")
    message = f"{s.ready}/{s.expected} instances ready"
    if s.restarting and s.ready + len(s.restarting) >= s.expected and not (s.new_version_rolling or s.first_rollout):
        # A crash the agent is restarting from is an event and a restart count; Failed is for what does not
        # recover (the crash loop above).
        return Status("Running", s.ready > 0, True, False, "InstanceRestarting",
                      f"{message}; restarting after a crash: " + "; ".join(s.restarting))
    if s.new_version_rolling:
        return Status("Updating", s.ready > 0, True, False, "RollingUpdate", message)
    if s.first_rollout:
        return Status("Creating", False, True, False, "InstancesStarting", message)
    return Status("Scaling", s.ready >= min(s.expected, 1), True, False, "Scaling", message)


def while_fetching(status: Status, fetching: dict[int, str]) -> Status:
    """Instances waiting for their version's files say so (reason FetchingModel), not only "0/1 ready"."""
    if not fetching or not status.progressing or status.degraded:
        return status
    what = "; ".join(f"fetching {urls} for version {number}" for number, urls in sorted(fetching.items()))
    return Status(status.phase, status.ready, True, False, "FetchingModel", f"{what}; {status.message}")
