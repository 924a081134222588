"""Bounded history: a service keeps its newest versions; older ones with no traffic and nothing running go."""

from django.conf import settings
from django.db import transaction

from services.models import Service
from services.rollouts import rollout_of


def prune_versions(service: Service) -> int:
    """Deletes the service's unused versions beyond the newest FERRY_VERSIONS_KEPT; returns how many.

    It decides under the service's row lock, the lock every service write takes, from what that lock lets it
    read: a version created meanwhile is seen together with the rollout that protects it, or not at all. (A
    reconcile's own copy of the service can be older than a version that a user's update has just committed.)
    """
    keep = max(settings.FERRY_VERSIONS_KEPT, 1)
    with transaction.atomic():
        current = Service.objects.select_for_update().filter(pk=service.pk).first()
        if current is None:
            return 0
        # Traffic applied or asked: a share a user has just asked for is not applied before the next plan.
        versions = list(current.versions.order_by("-number").values_list("number", "weight", "requested_weight"))
        in_use = (set(current.instances.values_list("version__number", flat=True))
                  | set(current.local_instances.values_list("version_number", flat=True)))
        protected = protected_versions(current)
        doomed = [number for number, weight, asked in versions[keep:]
                  if weight == 0 and not asked and number not in in_use and number not in protected]
        if doomed:
            current.versions.filter(number__in=doomed).delete()
        return len(doomed)


def protected_versions(service: Service) -> set[int]:
    """The last rolled-out version and both ends of a rollout: a rollback or an abort may need them."""
    protected = {service.last_rolled_out_version}
    rollout = rollout_of(service.rollout)
    if rollout is not None:
        protected |= rollout.versions
    return {number for number in protected if number}
