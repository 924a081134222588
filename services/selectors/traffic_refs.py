"""Group members and mirror targets, resolved by identity within one project and cluster when they are used.

A gateway serves one cluster and knows services and groups by name, so within a cluster names are one
namespace. What the control plane publishes is checked here each time a route is built, not only when a user
set it:
- a service joins its `metadata.group` only if its project owns the group on that cluster (the project of the
  group's oldest live member there); a member from another project publishes no group, so it can neither take
  the group's traffic nor have its token accepted for it;
- a mirror target is published only while the very service it named (by uid) still lives in the same project
  and cluster; a target deleted and re-created by anyone under the same name gets no copies.
"""

from django.db.models import QuerySet

from services.models import Service


def _live() -> QuerySet[Service]:
    return Service.objects.filter(deletion_requested_at__isnull=True)


def group_owner(group: str, cluster_id: int) -> int | None:
    """The project id of the group's oldest live member on the cluster, or None when no live service is in it."""
    if not group:
        return None
    return (_live().filter(group=group, cluster_id=cluster_id).order_by("created_at", "id")
            .values_list("project_id", flat=True).first())


def published_group(service: Service) -> str:
    """The group the gateway may put this service in: its own, if it belongs to the group's owner, else none."""
    if not service.group:
        return ""
    return service.group if group_owner(service.group, service.cluster_id) == service.project_id else ""


def gateway_name_conflict(*, project_id: int, cluster_id: int, name: str = "", group: str = "") -> str:
    """The field whose name the cluster's gateway already knows as another project's: a new service named like
    someone else's group would shadow it, a group named like someone else's service or group would take their
    traffic. "" when there is none. Within one project the names are the user's own business."""
    others = _live().filter(cluster_id=cluster_id).exclude(project_id=project_id)
    if name and others.filter(group=name).exists():
        return "name"
    if group and (others.filter(group=group).exists() or others.filter(name=group).exists()):
        return "metadata.group"
    return ""


def mirror_target_uids(service: Service, names: list[str]) -> dict[str, str]:
    """name -> uid of each named live service in the service's own project and cluster."""
    return dict(_live().filter(project_id=service.project_id, cluster_id=service.cluster_id, name__in=names)
                .values_list("name", "uid"))


def published_mirror(service: Service) -> dict | None:
    """The mirror as the gateway gets it ({"targets": [names], "ratio": n}), with only the targets that are still
    the services it was set to. A mirror stored before targets were kept by uid is resolved by name within the
    project and cluster."""
    mirror = service.mirror
    if not mirror:
        return None
    names = list(mirror.get("targets") or [])
    current = mirror_target_uids(service, names)
    wanted = mirror.get("target_uids") or {}
    kept = [name for name in names if name in current and wanted.get(name, current[name]) == current[name]]
    return {"targets": kept, "ratio": mirror.get("ratio", 0)}
