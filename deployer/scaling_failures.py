"""A service whose scaling cannot be decided (a cron schedule that raises, say) fails on its own: a Warning event
and a ScalingActive=False condition on that service, while the autoscaler loop goes on with every other one.

The event is recorded once per failure, not at every tick: the condition is the lasting record, and it turns
True again (with a Normal event) at the first tick that decides the service again.
"""

import logging
from datetime import UTC, datetime

from django.db import transaction

from services.models import Service
from services.writes import event_record

from .conditions import condition_set

logger = logging.getLogger("ferry.autoscaler")
CONDITION = "ScalingActive"


def scaling_failed(service: Service, error: Exception, now: float) -> None:
    cause = _cause(error)
    logger.warning("Could not decide the scale of %s: %s", service.name, cause)
    with transaction.atomic():
        row = Service.objects.select_for_update().filter(pk=service.pk).first()
        if row is None:
            return
        previous = _condition(row)
        if previous and previous["status"] == "False" and previous["message"] == cause:
            return  # already failed for this reason: no event at every tick
        _write(row, status=False, reason="ScalingFailed", message=cause, now=now)
        event_record(service=row, reason="ScalingFailed", warning=True,
                     message=f"Stopped scaling {row.name}: {cause}. Its instance count stays as it is until the "
                             "scaling configuration is fixed; other services keep scaling.")


def scaling_recovered(service: Service, now: float) -> None:
    previous = _condition(service)
    if not previous or previous["status"] == "True":
        return  # the common case: nothing to write
    with transaction.atomic():
        row = Service.objects.select_for_update().filter(pk=service.pk).first()
        if row is None or (_condition(row) or {}).get("status") != "False":
            return
        _write(row, status=True, reason="ScalingDecided", message="the autoscaler decides this service again", now=now)
        event_record(service=row, reason="ScalingRecovered", message=f"Scaling {row.name} again")


def _cause(error: Exception) -> str:
    from croniter import CroniterError

    if isinstance(error, CroniterError):
        return f"a cron schedule of its cron scaler cannot be evaluated ({error})"
    return f"{type(error).__name__}: {error}"


def _condition(service: Service) -> dict | None:
    return next((c for c in service.conditions or [] if c["type"] == CONDITION), None)


def _write(row: Service, *, status: bool, reason: str, message: str, now: float) -> None:
    row.conditions = condition_set(row.conditions or [], type=CONDITION, status=status, reason=reason,
                                   message=message, generation=row.generation,
                                   now=datetime.fromtimestamp(now, UTC))
    # Only the conditions: the reconciler owns the other status fields and the user the desired state.
    Service.objects.filter(pk=row.pk).update(conditions=row.conditions)
