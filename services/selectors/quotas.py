"""Reads for per-project quotas: what a service may reach, and what a project's services use. See
services/writes/quotas.py for the checks and docs/security.md for the rules."""

from dataclasses import dataclass

from services.scale import cron_ceiling, service_instance_count
from services.models import Project, Service


@dataclass(frozen=True)
class Demand:
    """What a service holds against its project's quota: its most instances, and their cores and MB."""

    instances: int
    cpu: float
    memory_mb: int


def service_demand(spec: dict, cron_scaler: dict | None, *, instances: int | None = None) -> Demand:
    """At the most instances the service may reach (autoscaler max, else its fixed count; a cron TargetSize above
    either), unless `instances` says how many it has now."""
    metadata = spec.get("metadata", {})
    if instances is None:
        autoscaler = spec.get("autoscaler")
        base = int(autoscaler["max"]) if autoscaler else int(metadata.get("instance", 1))
        instances = max(base, cron_ceiling(cron_scaler))
    cpu = float(metadata.get("cpu") or 0)
    memory = int(metadata.get("memory") or 0)
    return Demand(instances, instances * cpu, instances * memory)


def project_demand(project: Project, *, excluding: int | None = None, current: bool = False) -> Demand:
    """The sum over the project's services (but `excluding`), at their most instances, or as they run now."""
    total = Demand(0, 0.0, 0)
    services = Service.objects.filter(project=project, deletion_requested_at__isnull=True).exclude(pk=excluding)
    for service in services:
        demand = service_demand(service.spec, service.cron_scaler,
                                instances=service_instance_count(service) if current else None)
        total = Demand(total.instances + demand.instances, total.cpu + demand.cpu,
                       total.memory_mb + demand.memory_mb)
    return total


def quota_instance_cap(service: Service) -> int | None:
    """The most instances the autoscaler may give `service` within its project's quota, with the other services
    as they run now; None without a quota."""
    project = service.project
    if project.max_instances is None and project.max_cpu is None and project.max_memory_mb is None:
        return None
    others = project_demand(project, excluding=service.pk, current=True)
    one = service_demand(service.spec, None, instances=1)
    caps = []
    if project.max_instances is not None:
        caps.append(project.max_instances - others.instances)
    if project.max_cpu is not None and one.cpu:
        caps.append(int((project.max_cpu - others.cpu) // one.cpu))
    if project.max_memory_mb is not None and one.memory_mb:
        caps.append((project.max_memory_mb - others.memory_mb) // one.memory_mb)
    return max(0, min(caps)) if caps else None
