"""Checks of scaling writes against the platform's bound per service (FERRY_MAX_INSTANCES_PER_SERVICE) and the
project's quotas (Project.max_instances, max_cpu, max_memory_mb). Called inside the write's transaction, before
anything is saved, so a refusal changes nothing; the project row is locked, so two writes of one project at once
cannot both take the last of its quota."""

from django.conf import settings

from services.errors import InvalidRequest
from services.models import Project
from services.scale import cron_ceiling
from services.selectors.quotas import Demand, project_demand, service_demand

QUOTA_CODE = "QuotaExceeded"


def scaling_checked(*, project: Project, spec: dict, cron_scaler: dict | None, service_pk: int | None = None,
                    before: Demand | None = None) -> None:
    """Refuses, naming the field, a count above the platform's bound or a demand past the project's quota.
    `before`: the service's demand before this write; a write that asks for no more than it may keep what an
    admin's lowered quota no longer covers."""
    _check_bounds(spec, cron_scaler)
    demand = service_demand(spec, cron_scaler)
    if before is not None and (demand.instances <= before.instances and demand.cpu <= before.cpu
                               and demand.memory_mb <= before.memory_mb):
        return
    project = Project.objects.select_for_update().get(pk=project.pk)
    if project.max_instances is None and project.max_cpu is None and project.max_memory_mb is None:
        return
    others = project_demand(project, excluding=service_pk)
    if project.max_instances is not None and others.instances + demand.instances > project.max_instances:
        raise _over(_instances_field(spec, cron_scaler), f"{demand.instances} instance(s)", others.instances,
                    project.max_instances, "instances", project)
    if project.max_cpu is not None and others.cpu + demand.cpu > project.max_cpu:
        raise _over("metadata.cpu", f"{demand.cpu:g} cores ({demand.instances} x {demand.cpu / demand.instances:g})"
                    if demand.instances else "0 cores", others.cpu, project.max_cpu, "cores", project)
    if project.max_memory_mb is not None and others.memory_mb + demand.memory_mb > project.max_memory_mb:
        raise _over("metadata.memory", f"{demand.memory_mb} MB", others.memory_mb, project.max_memory_mb, "MB",
                    project)


def _check_bounds(spec: dict, cron_scaler: dict | None) -> None:
    bound = settings.FERRY_MAX_INSTANCES_PER_SERVICE
    message = f"must be at most {bound} (FERRY_MAX_INSTANCES_PER_SERVICE)"
    if int(spec.get("metadata", {}).get("instance", 1)) > bound:
        raise InvalidRequest.at("metadata.instance", message)
    autoscaler = spec.get("autoscaler") or {}
    for name in ("max", "min"):
        if int(autoscaler.get(name, 0)) > bound:
            raise InvalidRequest.at(f"autoscaler.{name}", message)
    for index, job in enumerate((cron_scaler or {}).get("ScaleJobs") or ()):
        if int(job["TargetSize"]) > bound:
            raise InvalidRequest.at(f"ScaleJobs[{index}].TargetSize", message)


def _instances_field(spec: dict, cron_scaler: dict | None) -> str:
    """The field that sets the service's most instances."""
    autoscaler = spec.get("autoscaler")
    base = int(autoscaler["max"]) if autoscaler else int(spec.get("metadata", {}).get("instance", 1))
    ceiling = cron_ceiling(cron_scaler)
    if ceiling > base:
        jobs = cron_scaler["ScaleJobs"]
        return f"ScaleJobs[{next(i for i, job in enumerate(jobs) if int(job['TargetSize']) == ceiling)}].TargetSize"
    return "autoscaler.max" if autoscaler else "metadata.instance"


def _over(field: str, asked: str, used: float, quota: float, unit: str, project: Project) -> InvalidRequest:
    return InvalidRequest.at(field, f"{asked} would take project {project.name} past its quota of {quota:g} {unit} "
                                    f"({used:g} held by its other services)", code=QUOTA_CODE)
