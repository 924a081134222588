"""The status a service shows, derived (purely) from what is desired and what is observed."""

from dataclasses import dataclass


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
    if s.new_version_rolling:
        return Status("Updating", s.ready > 0, True, False, "RollingUpdate", message)
    if s.first_rollout:
        return Status("Creating", False, True, False, "InstancesStarting", message)
    return Status("Scaling", s.ready >= min(s.expected, 1), True, False, "Scaling", message)
