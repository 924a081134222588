"""Status conditions in the Kubernetes style: [{type, status, reason, message, last_transition_time,
observed_generation}]. Pure functions: they return new lists and never touch the database."""

from datetime import datetime

# ScalingActive (as a Kubernetes HPA reports it): written by the autoscaler loop, only once a service's scaling failed.
CONDITION_TYPES = ("Ready", "Progressing", "Degraded", "ScalingActive")


def condition_set(conditions: list[dict], *, type: str, status: bool, reason: str, message: str,
                  generation: int, now: datetime) -> list[dict]:
    """Sets one condition; its transition time moves only when its status changes."""
    previous = next((c for c in conditions if c["type"] == type), None)
    status_text = "True" if status else "False"
    changed = previous is None or previous["status"] != status_text
    updated = {
        "type": type,
        "status": status_text,
        "reason": reason,
        "message": message,
        "last_transition_time": now.isoformat() if changed else previous["last_transition_time"],
        "observed_generation": generation,
    }
    others = [c for c in conditions if c["type"] != type]
    return sorted(others + [updated], key=lambda c: CONDITION_TYPES.index(c["type"]))
