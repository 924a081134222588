"""EAS's service safety lock: which changes a locked service refuses.

EAS documents three levels: `all` locks every operation, `dangerous` locks dangerous ones such as delete and
stop, `none` locks nothing. Ferry counts as dangerous what takes serving capacity away at once: deleting or
stopping the service, restarting it, and deleting (restarting) some of its instances. Reads are never locked,
and neither is UpdateServiceSafetyLock, or a locked service could never be unlocked.

The writes enforce it under their row lock, so the API, the console and the CLI refuse alike:
`desired_state_changed` (where every user change ends) for "all", and the dangerous writes for "dangerous".
"""

from services.errors import Conflict
from services.models import Service

LOCK_LEVELS = ("none", "dangerous", "all")
DANGEROUS_OPERATIONS = frozenset({"DeleteService", "StopService", "RestartService", "DeleteServiceInstances"})
UNLOCK_OPERATION = "UpdateServiceSafetyLock"


def lock_refusal(lock: str, operation: str = "") -> str | None:
    """Why `lock` refuses `operation` (an EAS operation name; empty for any other change), or None. Pure."""
    if operation == UNLOCK_OPERATION or lock not in ("dangerous", "all"):
        return None
    if lock == "dangerous" and operation not in DANGEROUS_OPERATIONS:
        return None
    what = f"{operation} is" if operation else "changes are"
    scope = "every change" if lock == "all" else "dangerous operations (delete, stop, restart)"
    return (f'locked against {scope} (SafetyLock "{lock}"): {what} refused. Set the lock to "none" with '
            f"UpdateServiceSafetyLock first.")


def require_unlocked(service: Service, operation: str = "") -> None:
    refusal = lock_refusal(service.safety_lock, operation)
    if refusal is not None:
        raise Conflict(f"Service {service.name} is {refusal}", code="ServiceLocked")
