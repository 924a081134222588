"""Mirrors what a driver observed into services' Instance rows, and tells the timeline what changed."""

from django.utils import timezone

from services.models import Instance, Service
from services.writes import event_record

from .drivers.base import ObservedInstance
from .status import FAILING, crash_verdict, restart_message


def record_observed(service: Service, observed: list[ObservedInstance]) -> None:
    versions = {version.number: version for version in service.versions.all()}
    existing = {instance.name: instance for instance in service.instances.all()}
    for seen in observed:
        if seen.version not in versions:
            continue  # its version was pruned; the instance is on its way out
        _record_one(service, existing.get(seen.name), seen, versions[seen.version])
    gone = set(existing) - {seen.name for seen in observed}
    if gone:
        service.instances.filter(name__in=gone).delete()


def _record_one(service: Service, instance: Instance | None, seen: ObservedInstance, version) -> None:
    if instance is None:
        instance = Instance(service=service, name=seen.name, version=version)
    else:
        _report_changes(service, instance, seen)
    fields = dict(version=version, state=seen.state, ready=seen.ready, host=seen.host, port=seen.port,
                  restart_count=seen.restart_count, last_exit_reason=seen.last_exit_reason,
                  started_at=seen.started_at)
    if instance.pk and all(getattr(instance, key) == value for key, value in fields.items()):
        return
    for key, value in fields.items():
        setattr(instance, key, value)
    instance.save()


def _report_changes(service: Service, before: Instance, seen: ObservedInstance) -> None:
    if seen.restart_count > before.restart_count:
        event_record(service=service, reason="InstanceRestarted", warning=True, instance_name=seen.name,
                     message=restart_message(seen.name, seen.last_exit_reason, seen.restart_count))
    if _newly_failing(before, seen):
        event_record(service=service, reason="BackOff" if seen.state == "CrashLoopBackOff" else "InstanceFailed",
                     warning=True, instance_name=seen.name,
                     message=f"Instance {seen.name} is {seen.state}: {seen.last_exit_reason or 'no reason given'}")
    if seen.ready and not before.ready:
        event_record(service=service, reason="InstanceReady", instance_name=seen.name,
                     message=f"Instance {seen.name} became ready on port {seen.port}")


def _newly_failing(before: Instance, seen: ObservedInstance) -> bool:
    """A crash loop (or a failure to start) that the last observation did not show yet: one crash is not."""
    failing = crash_verdict(seen.state, seen.restart_count, seen.started_at, timezone.now()) == FAILING
    return failing and crash_verdict(before.state, before.restart_count, before.started_at,
                                     before.updated_at) != FAILING
