"""Bounded history: a service keeps its newest versions; older ones with no traffic and nothing running go."""

from django.conf import settings

from services.models import Service


def prune_versions(service: Service) -> int:
    keep = max(settings.FERRY_VERSIONS_KEPT, 1)
    protected = {service.last_rolled_out_version}
    if service.rollout:
        protected |= {service.rollout["from_version"], service.rollout["to_version"]}
    candidates = (service.versions.filter(weight=0).exclude(number__in=[n for n in protected if n])
                  .filter(instances__isnull=True).order_by("-number"))
    newest_kept = list(service.versions.order_by("-number").values_list("number", flat=True)[:keep])
    doomed = candidates.exclude(number__in=newest_kept)
    if service.local_instances.filter(version_number__in=doomed.values("number")).exists():
        doomed = doomed.exclude(number__in=service.local_instances.values("version_number"))
    count = doomed.count()
    if count:
        doomed.delete()
    return count
