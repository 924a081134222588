"""Which clusters a user may see and a project may deploy to: those an admin granted to the project.

A cluster not granted to any of the user's projects does not exist for them: lookups answer the same "not
found" as for a cluster that does not exist, so names of other projects' clusters never leak."""

from django.db.models import Count, Q, QuerySet

from services.errors import NotFound
from services.models import Cluster, Project


def clusters_visible_to(user) -> QuerySet[Cluster]:
    """Clusters granted to a project of `user` (every cluster for superusers), with their live service count."""
    clusters = Cluster.objects.all()
    if not user.is_superuser:
        granted = Cluster.objects.filter(grants__project__memberships__user=user).values("pk")
        clusters = clusters.filter(pk__in=granted)
    return clusters.annotate(
        service_count=Count("services", filter=Q(services__deletion_requested_at__isnull=True))
    ).order_by("name")


def cluster_visible(user, name: str) -> Cluster:
    cluster = clusters_visible_to(user).filter(name=name).first()
    if cluster is None:
        raise NotFound(f"Cluster {name} not found.", code="ClusterNotFound")
    return cluster


def granted_cluster_names(project: Project) -> list[str]:
    return list(Cluster.objects.filter(grants__project=project).order_by("name").values_list("name", flat=True))


def cluster_granted(project: Project, cluster: Cluster) -> bool:
    return cluster.grants.filter(project=project).exists()
