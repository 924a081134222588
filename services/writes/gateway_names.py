"""A cluster gateway's one namespace of service and group names, guarded where services are created or
regrouped.

The checks read other services' rows, so two requests could each pass them and together collide; a
transaction-scoped advisory lock makes them take turns (PostgreSQL; elsewhere the publish-time checks of
services.selectors.traffic_refs still keep members and targets inside their project)."""

import zlib

from django.db import connection

from services.errors import InvalidRequest
from services.models import Service
from services.selectors.traffic_refs import gateway_name_conflict

NAMES_LOCK_KEY = zlib.crc32(b"ferry:gateway-names")


def gateway_names_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [NAMES_LOCK_KEY])


def gateway_names_check(*, project_id: int, cluster_id: int, name: str = "", group: str = "") -> None:
    """Refuses a name or group another project holds on the cluster; the same words for a service and a group."""
    gateway_names_lock()
    field = gateway_name_conflict(project_id=project_id, cluster_id=cluster_id, name=name, group=group)
    if field:
        taken = name if field == "name" else group
        raise InvalidRequest.at(field, f'"{taken}" is already in use on the gateway; choose another name',
                                code="InvalidServiceConfig")


def traffic_references_changed(service: Service, *, group: str | None = None) -> None:
    """After a service leaves (deleted) or changes group: the routes naming it as a mirror target or sharing its
    group (`group`: the one it left, else its own) are published again, so none keeps sending to a name that may
    now be someone else's, and the group's ownership is decided again."""
    from .reconcile import reconcile_request

    related = Service.objects.filter(deletion_requested_at__isnull=True).exclude(pk=service.pk)
    # Mirror targets are read here, not by a JSON `contains` lookup: SQLite (make run's database) has none.
    mirroring = [other for other in related.filter(mirror__isnull=False)
                 if service.name in ((other.mirror or {}).get("targets") or [])]
    group = service.group if group is None else group
    grouped = list(related.filter(group=group)) if group else []
    for other in {other.pk: other for other in mirroring + grouped}.values():
        reconcile_request(other)
