"""Writes to cluster grants: an administrator grants a cluster to a project, or takes the grant back.

Taking a grant back does not stop what runs there: the project's services on that cluster keep running and
stay theirs to change or delete, but no new service, clone or move can land there."""

from django.db import transaction

from services.errors import Forbidden
from services.models import Cluster, ClusterGrant, Project


def _require_admin(actor) -> None:
    if actor is not None and not actor.is_superuser:
        raise Forbidden("Only administrators grant clusters to projects.")


@transaction.atomic
def cluster_grant(*, actor, project: Project, cluster: Cluster) -> ClusterGrant:
    _require_admin(actor)
    grant, _ = ClusterGrant.objects.get_or_create(
        project=project, cluster=cluster,
        defaults={"granted_by": actor if getattr(actor, "is_authenticated", False) else None})
    return grant


@transaction.atomic
def cluster_revoke(*, actor, project: Project, cluster: Cluster) -> bool:
    """True when there was a grant to take back."""
    _require_admin(actor)
    deleted, _ = ClusterGrant.objects.filter(project=project, cluster=cluster).delete()
    return deleted > 0
