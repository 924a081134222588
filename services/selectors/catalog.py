"""Reads of services, versions, instances, events and groups, in the shapes the API and console need."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import CharField, Count, Max, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from services.encryption import decrypt
from services.errors import InvalidRequest
from services.models import Cluster, Event, Instance, Service, Version

from .access import services_visible_to
from .label_keys import label_key_problem

SORTABLE_FIELDS = {
    "CreateTime": "created_at",
    "UpdateTime": "updated_at",
    "ServiceName": "name",
    "Status": "phase",
    "TotalInstance": "instance_count",
}


@dataclass(frozen=True)
class Page:
    items: list
    number: int
    size: int
    total: int

    @property
    def page_count(self) -> int:
        return (self.total + self.size - 1) // self.size if self.size else 0


def paginate(queryset, number: int, size: int) -> Page:
    total = len(queryset) if isinstance(queryset, list) else queryset.count()
    start = (number - 1) * size
    return Page(items=list(queryset[start : start + size]), number=number, size=size, total=total)


def services_list(user, *, name_contains: str = "", name: str = "", group: str = "", status: str = "",
                  cluster: str = "", project: str = "", sort: str = "", order: str = "desc",
                  labels: dict | None = None) -> QuerySet[Service]:
    services = services_visible_to(user).filter(deletion_requested_at__isnull=True)
    filters = Q()
    if name_contains:
        filters &= Q(name__icontains=name_contains)
    if name:
        filters &= Q(name=name)
    if group:
        filters &= Q(group=group)
    if status:
        filters &= Q(phase=status)
    if cluster:
        filters &= Q(cluster__name=cluster)
    if project:
        filters &= Q(project__name=project)
    services = _with_labels(services.filter(filters), labels or {})
    return services.order_by(*_ordering(sort, order))


def _with_labels(services: QuerySet[Service], labels: dict) -> QuerySet[Service]:
    """Services having every label given (EAS ListServices' Label). Each key is looked up as a literal JSON key:
    spelled into a lookup path ("labels__<key>"), a key such as "a__contains" would become an operator. Keys
    are checked by the label key rules first, so a filter can name only what a label could be."""
    errors = [{"Path": f"Label.{key}", "Message": problem} for key, value in labels.items()
              if (problem := label_key_problem(key) or _label_value_problem(value)) is not None]
    if errors:
        raise InvalidRequest("; ".join(f"{e['Path']}: {e['Message']}" for e in errors), errors=errors)
    for index, (key, value) in enumerate(sorted(labels.items())):
        alias = f"label_{index}"
        # Cast: on SQLite (make run's database) the key transform's own `exact` would compare JSON, not text.
        services = services.alias(**{alias: Cast(KeyTextTransform(key, "labels"), CharField())}).filter(
            **{alias: value})
    return services


def _label_value_problem(value: object) -> str | None:
    return None if isinstance(value, str) else "a label value must be a string"


def _ordering(sort: str, order: str) -> list[str]:
    if sort and sort not in SORTABLE_FIELDS:
        raise InvalidRequest.at("Sort", f"must be one of {', '.join(SORTABLE_FIELDS)}")
    if order.lower() not in ("asc", "desc"):
        raise InvalidRequest.at("Order", "must be asc or desc")
    field = SORTABLE_FIELDS.get(sort, "created_at")
    prefix = "-" if order.lower() == "desc" else ""
    return [f"{prefix}{field}", f"{prefix}id"]


def service_token(service: Service) -> str:
    return decrypt(service.token_encrypted)


def versions_of(service: Service) -> QuerySet[Version]:
    return service.versions.order_by("-number")


def current_version(service: Service) -> Version | None:
    return service.versions.order_by("-weight", "-number").first()


def latest_version_number(service: Service) -> int:
    return service.versions.aggregate(latest=Max("number"))["latest"] or 0


def instance_counts(service: Service) -> dict:
    counts = service.instances.aggregate(total=Count("id"), ready=Count("id", filter=Q(ready=True)))
    return {"total": counts["total"], "ready": counts["ready"], "pending": counts["total"] - counts["ready"]}


def instances_of(service: Service, *, name: str = "", status: str = "", ip: str = "") -> QuerySet[Instance]:
    instances = service.instances.select_related("version")
    if name:
        instances = instances.filter(name__icontains=name)
    if status:
        instances = instances.filter(state=status)
    if ip:
        instances = instances.filter(host=ip)
    return instances.order_by("name")


def events_of(service: Service, *, event_type: str = "", instance_name: str = "",
              start: datetime | None = None, end: datetime | None = None) -> QuerySet[Event]:
    events = service.events.all()
    if event_type:
        events = events.filter(type=event_type)
    if instance_name:
        events = events.filter(instance_name=instance_name)
    if start:
        events = events.filter(created_at__gte=start)
    if end:
        events = events.filter(created_at__lte=end)
    return events.order_by("-created_at", "-id")


def groups_visible_to(user, *, name_contains: str = "", project: str = "") -> list[dict]:
    """EAS service groups are implied by services' metadata.group: one group per (cluster, name)."""
    services = services_visible_to(user).filter(deletion_requested_at__isnull=True).exclude(group="")
    if name_contains:
        services = services.filter(group__icontains=name_contains)
    if project:
        services = services.filter(project__name=project)
    rows = services.values("cluster__name", "group").annotate(
        created=Max("created_at"), updated=Max("updated_at"), members=Count("id")
    )
    return sorted(rows, key=lambda row: (row["cluster__name"], row["group"]))


def group_members(user, cluster_id: str, group: str) -> QuerySet[Service]:
    return services_visible_to(user).filter(cluster__name=cluster_id, group=group, deletion_requested_at__isnull=True)


def clusters_list() -> QuerySet[Cluster]:
    return Cluster.objects.annotate(
        service_count=Count("services", filter=Q(services__deletion_requested_at__isnull=True))
    ).order_by("name")
