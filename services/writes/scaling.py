"""Writes to scaling: fixed instance count, autoscaler (both live in the service file) and the cron scaler."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from django.db import transaction
from django.utils import timezone

from services.errors import InvalidRequest, NotFound
from services.models import Service
from services.selectors.quotas import service_demand

from .catalog import desired_state_changed, service_update
from .events import event_record
from .mesh import pool_model_scale_refused
from .quotas import scaling_checked
from .scaling_support import cron_scaler_check_supported


def service_scale(*, actor, service: Service, instances: int) -> Service:
    if not isinstance(instances, int) or isinstance(instances, bool) or instances < 0:
        raise InvalidRequest.at("metadata.instance", "must be an integer >= 0")
    return service_update(actor=actor, service=service, patch={"metadata": {"instance": instances}})


def autoscaler_set(*, actor, service: Service, autoscaler: dict) -> Service:
    """Validated as the service file's `autoscaler` section, so errors carry the same paths."""
    return service_update(actor=actor, service=service, patch={"autoscaler": autoscaler})


def autoscaler_delete(*, actor, service: Service) -> Service:
    if service.autoscaler is None:
        raise NotFound(f"Service {service.name} has no autoscaler.", code="AutoScalerNotFound")
    # A merge patch replaces objects member by member; null removes the whole section.
    return service_update(actor=actor, service=service, patch={"autoscaler": None})


# A valid expression for a date that never comes ("0 0 0 31 2 *": 31 February) would raise at every tick.
SCHEDULE_HORIZON_YEARS = 5


def _fires_within_years(schedule: str) -> bool:
    now = timezone.now()
    try:
        upcoming = croniter(schedule, now, second_at_beginning=True).get_next(datetime)
        croniter(schedule, now, second_at_beginning=True).get_prev(datetime)
    except (CroniterError, ValueError, OverflowError):
        return False
    return upcoming - now <= timedelta(days=366 * SCHEDULE_HORIZON_YEARS)


def _cron_errors(jobs: list[dict], exclude_dates: list[str]) -> list[dict]:
    errors = []
    names = set()
    for index, job in enumerate(jobs):
        path = f"ScaleJobs[{index}]"
        if not croniter.is_valid(job["Schedule"], second_at_beginning=True) or len(job["Schedule"].split()) != 6:
            errors.append({"Path": f"{path}.Schedule", "Message": "must be a 6-field cron expression, seconds first"})
        elif not _fires_within_years(job["Schedule"]):
            errors.append({"Path": f"{path}.Schedule", "Message": f"never fires within {SCHEDULE_HORIZON_YEARS} "
                                                                  "years (a date that does not exist?)"})
        if job.get("TimeZone"):
            try:
                ZoneInfo(job["TimeZone"])
            except (ZoneInfoNotFoundError, ValueError):
                errors.append({"Path": f"{path}.TimeZone", "Message": f'unknown time zone "{job["TimeZone"]}"'})
        if job["Name"] in names:
            errors.append({"Path": f"{path}.Name", "Message": f'duplicate job name "{job["Name"]}"'})
        names.add(job["Name"])
    for index, expression in enumerate(exclude_dates):
        if not croniter.is_valid(expression, second_at_beginning=len(expression.split()) == 6):
            errors.append({"Path": f"ExcludeDates[{index}]", "Message": "must be a cron expression"})
    return errors


@transaction.atomic
def cron_scaler_set(*, actor, service: Service, scale_jobs: list[dict], exclude_dates: list[str]) -> Service:
    """EAS cron scaler: at each job's schedule, the instance floor becomes TargetSize."""
    errors = _cron_errors(scale_jobs, exclude_dates)
    if not scale_jobs:
        errors.append({"Path": "ScaleJobs", "Message": "give at least one job"})
    if errors:
        raise InvalidRequest("; ".join(f"{e['Path']}: {e['Message']}" for e in errors), errors=errors)
    service = Service.objects.select_for_update().select_related("cluster").get(pk=service.pk)
    pool_model_scale_refused(service)
    cron_scaler_check_supported(service)
    new_scaler = {"ScaleJobs": scale_jobs, "ExcludeDates": exclude_dates}
    scaling_checked(project=service.project, spec=service.spec, cron_scaler=new_scaler, service_pk=service.pk,
                    before=service_demand(service.spec, service.cron_scaler))
    # SetAt: DescribeServiceCronScaler's CreateTime.
    service.cron_scaler = {"ScaleJobs": scale_jobs, "ExcludeDates": exclude_dates,
                           "SetAt": timezone.now().isoformat()}
    event_record(service=service, reason="SetCronScaler",
                 message=f"Set {len(scale_jobs)} cron scaling job(s) on {service.name}", actor=actor)
    return desired_state_changed(service)


@transaction.atomic
def cron_scaler_delete(*, actor, service: Service) -> Service:
    service = Service.objects.select_for_update().get(pk=service.pk)
    if service.cron_scaler is None:
        raise NotFound(f"Service {service.name} has no cron scaler.", code="CronScalerNotFound")
    service.cron_scaler = None
    if service.autoscaler is None:
        service.autoscaled_instances = None  # the floor it set goes with it
    event_record(service=service, reason="RemovedCronScaler", message=f"Removed the cron scaler of {service.name}",
                 actor=actor)
    return desired_state_changed(service)
