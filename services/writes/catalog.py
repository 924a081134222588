"""Writes to services: create, update, start, stop, restart, delete.

Every write validates first and changes nothing when it fails; a change of desired state bumps the
generation and asks the deployer to reconcile once the transaction has committed.
"""

import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone

from services.encryption import encrypt
from services.errors import AlreadyExists, InvalidRequest, NotFound
from services.models import Cluster, DesiredState, Instance, Phase, Project, Service, Version
from services.rollouts import rollout_of
from services.selectors.grants import cluster_granted, granted_cluster_names
from services.selectors.locks import require_unlocked
from services.selectors.quotas import service_demand
from services.servicefile import instance_spec, merge_update, validate_service_file
from services.servicefile.asynchronous import is_async

from .events import event_record
from .gateway_names import gateway_names_check, traffic_references_changed
from .labels import labels_after_update, labels_changed_message, labels_checked
from .reconcile import reconcile_request
from .kubernetes_support import kubernetes_check_allowed
from .mesh import mesh_change_checked, pool_delete_checked, pool_model_checked
from .quotas import scaling_checked
from .scaling_support import autoscaler_check_supported

UPDATE_TYPES = ("merge", "replace")


def new_service_token() -> str:
    return secrets.token_urlsafe(30)


def cluster_for_file(service_file: dict, *, project: Project | None = None) -> Cluster:
    """`metadata.resource` names the cluster (EAS: the resource group); empty means the default cluster.

    With `project`, the cluster must be granted to it: one that is not, and one that does not exist, are refused
    with the same words, naming only the clusters the project has, so other projects' clusters never show."""
    name = service_file.get("metadata", {}).get("resource") or ""
    if not name:
        cluster = Cluster.objects.filter(is_default=True).first()
        if cluster is None:
            raise InvalidRequest.at("metadata.resource", "no default cluster is configured; name one")
    else:
        cluster = Cluster.objects.filter(name=name).first()
    if project is not None:
        if cluster is None or not cluster_granted(project, cluster):
            granted = ", ".join(granted_cluster_names(project)) or "none; ask an administrator for a grant"
            shown = name or f"{cluster.name} (the default)"
            raise InvalidRequest.at("metadata.resource", f'cluster "{shown}" is not granted to project '
                                                         f'{project.name} (granted: {granted})',
                                    code="ClusterNotGranted")
        return cluster
    if cluster is None:
        raise InvalidRequest.at("metadata.resource", f'unknown cluster "{name}"')
    return cluster


def _scaling_fields(service_file: dict) -> dict:
    metadata = service_file.get("metadata", {})
    return {
        "instance_count": metadata.get("instance", 1),
        "autoscaler": service_file.get("autoscaler"),
        "group": metadata.get("group") or "",
    }


def _without_token(service_file: dict) -> tuple[dict, str | None]:
    """The file as stored: without its token (kept encrypted) and its labels (the service's own)."""
    stored = dict(service_file)
    token = stored.pop("token", None) or None
    stored.pop("labels", None)
    return stored, token


@transaction.atomic
def service_create(*, actor, project: Project, document: object, labels: dict | None = None) -> Service:
    """`labels` (CreateService's Labels) join the file's `labels`, and win where both name a key."""
    service_file = validate_service_file(document)
    labels = {**labels_checked(service_file.get("labels") or {}, "labels"), **labels_checked(labels or {}, "Labels")}
    # A user's deploy needs the cluster granted to the project; the system's own (actor None) is trusted.
    cluster = cluster_for_file(service_file, project=project if actor is not None else None)
    spec, token = _without_token(service_file)
    spec = pool_model_checked(spec, project=project, cluster=cluster)
    name = spec["name"]
    autoscaler_check_supported(spec.get("autoscaler"), cluster=cluster, service_name=name,
                               asynchronous=is_async(spec))
    scaling_checked(project=project, spec=spec, cron_scaler=None)
    kubernetes_check_allowed(spec, cluster=cluster)
    gateway_names_check(project_id=project.pk, cluster_id=cluster.pk, name=name,
                        group=spec.get("metadata", {}).get("group") or "")
    if Service.objects.filter(cluster=cluster, name=name).exists():
        raise AlreadyExists(f'A service named "{name}" already exists in cluster "{cluster.name}".')
    try:
        with transaction.atomic():
            service = Service.objects.create(
                uid=f"fs-{secrets.token_hex(6)}",
                project=project,
                cluster=cluster,
                name=name,
                labels=labels,
                spec=spec,
                token_encrypted=encrypt(token or new_service_token()),
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
                phase=Phase.CREATING,
                last_rolled_out_version=1,
                **_scaling_fields(spec),
            )
    except IntegrityError:
        # Another request created it between our check and our insert.
        raise AlreadyExists(f'A service named "{name}" already exists in cluster "{cluster.name}".') from None
    Version.objects.create(
        service=service, number=1, instance_spec=instance_spec(spec), service_file=spec, weight=100,
        requested_weight=100, message="Created with the service",
    )
    event_record(service=service, reason="CreatedService", message=f"Created service {name} with version 1",
                 actor=actor)
    reconcile_request(service)
    return service


def _merged_file(service: Service, patch: object, update_type: str) -> dict:
    if update_type not in UPDATE_TYPES:
        raise InvalidRequest.at("UpdateType", f'must be one of {", ".join(UPDATE_TYPES)}')
    if update_type == "replace":
        if isinstance(patch, dict) and patch.get("name", service.name) != service.name:
            raise InvalidRequest.at("name", "a service cannot be renamed", code="InvalidServiceConfig")
        replacement = dict(patch) if isinstance(patch, dict) else patch
        if isinstance(replacement, dict):
            replacement.setdefault("name", service.name)
        return validate_service_file(replacement)
    # The labels join the file the patch applies to, so that the patch can change and remove them too.
    return merge_update({**service.spec, **({"labels": service.labels} if service.labels else {})}, patch)


def _latest_version(service: Service) -> Version:
    return service.versions.order_by("-number").first()


def _create_version(service: Service, spec: dict, *, strategy: str | None, canary_weight: int | None,
                    actor) -> Version:
    from .rollouts import rollout_begin  # rollouts builds on this module

    number = _latest_version(service).number + 1
    version = Version.objects.create(
        service=service, number=number, instance_spec=instance_spec(spec), service_file=spec, weight=0,
        message="Created by an update",
    )
    event_record(service=service, reason="CreatedVersion", message=f"Created version {number} of {service.name}",
                 actor=actor)
    rollout = spec.get("rollout") or {}
    rollout_begin(service, version, strategy=strategy or rollout.get("strategy", "rolling"),
                  canary_weight=canary_weight if canary_weight is not None else rollout.get("canary_weight"),
                  actor=actor)
    return version


@transaction.atomic
def service_update(*, actor, service: Service, patch: object, update_type: str = "merge",
                   strategy: str | None = None, canary_weight: int | None = None) -> Service:
    """Applies a partial (merge) or whole (replace) service file. A change to what shapes an instance
    makes a new version, rolled out by `strategy` (else the file's `rollout`, else rolling); scaling and
    grouping changes do not make versions."""
    service = Service.objects.select_for_update().get(pk=service.pk)
    new_file = _merged_file(service, patch, update_type)
    if cluster_for_file(new_file) != service.cluster:
        raise InvalidRequest.at("metadata.resource", "a service cannot move to another cluster; create it there")
    labels = labels_checked(labels_after_update(service.labels, new_file, update_type), "labels")
    spec, token = _without_token(new_file)
    mesh_change_checked(service, spec)
    spec = pool_model_checked(spec, project=service.project, cluster=service.cluster)
    if spec.get("autoscaler") != service.autoscaler:  # a service made before a refusal may keep what it has
        autoscaler_check_supported(spec.get("autoscaler"), cluster=service.cluster, service_name=service.name,
                                   asynchronous=is_async(spec))
    scaling_checked(project=service.project, spec=spec, cron_scaler=service.cron_scaler, service_pk=service.pk,
                    before=service_demand(service.spec, service.cron_scaler))
    kubernetes_check_allowed(spec, cluster=service.cluster)
    if spec == service.spec and token is None and labels == service.labels:
        return service
    if instance_spec(spec) != _current_version(service).instance_spec:
        _create_version(service, spec, strategy=strategy, canary_weight=canary_weight, actor=actor)
    if labels != service.labels:
        event_record(service=service, reason="ChangedLabels",
                     message=labels_changed_message(service.name, service.labels, labels), actor=actor)
        service.labels = labels
    if token is not None:
        service.token_encrypted = encrypt(token)
        event_record(service=service, reason="RotatedToken", message=f"Replaced the access token of {service.name}",
                     actor=actor)
    old_scaling = _scaling_fields(service.spec)
    new_group = _scaling_fields(spec)["group"]
    if new_group != old_scaling["group"]:
        if new_group:
            gateway_names_check(project_id=service.project_id, cluster_id=service.cluster_id, group=new_group)
        traffic_references_changed(service, group=old_scaling["group"])
    for field, value in _scaling_fields(spec).items():
        setattr(service, field, value)
    if old_scaling["autoscaler"] is not None and service.autoscaler is None:
        service.autoscaled_instances = None  # the autoscaler's last decision goes with it
    if _scaling_fields(spec) != old_scaling:
        event_record(service=service, reason="UpdatedScaling", message=_scaling_message(service, old_scaling),
                     actor=actor)
    service.spec = spec
    return desired_state_changed(service)


def _scaling_message(service: Service, old: dict) -> str:
    changes = []
    if old["instance_count"] != service.instance_count:
        changes.append(f"instances {old['instance_count']} -> {service.instance_count}")
    if old["autoscaler"] != service.autoscaler:
        changes.append("autoscaler " + ("removed" if service.autoscaler is None else "set"))
    if old["group"] != service.group:
        changes.append(f"group {old['group'] or '-'} -> {service.group or '-'}")
    return f"Changed {service.name}: " + ", ".join(changes)


def _current_version(service: Service) -> Version:
    """The version the service's file describes: a rollout's target while it is under way (scaling a canary, or
    changing its deadline, must not start another version), else the version serving most traffic (ties: the
    newest)."""
    rollout = rollout_of(service.rollout)
    if rollout is not None and rollout.in_progress:
        target = service.versions.filter(number=rollout.to_version).first()
        if target is not None:
            return target
    return service.versions.order_by("-weight", "-number").first()


def desired_state_changed(service: Service, **fields) -> Service:
    """Records a change of desired state and asks the deployer to act on it. Every change a user makes ends
    here, on the row it has locked, so this is where a safety lock of "all" refuses it (the transaction then
    undoes whatever the write did before); the deployer's own decisions never come here."""
    require_unlocked(service)
    for name, value in fields.items():
        setattr(service, name, value)
    service.generation += 1
    service.save()
    reconcile_request(service)
    return service


def _desired_state_set(actor, service: Service, state: str, reason: str, verb: str, operation: str = "") -> Service:
    service = Service.objects.select_for_update().get(pk=service.pk)
    require_unlocked(service, operation)
    if service.desired_state == state:
        return service
    event_record(service=service, reason=reason, message=f"Requested {verb} of {service.name}", actor=actor)
    return desired_state_changed(service, desired_state=state)


@transaction.atomic
def service_start(*, actor, service: Service) -> Service:
    return _desired_state_set(actor, service, DesiredState.RUNNING, "StartRequested", "start")


@transaction.atomic
def service_stop(*, actor, service: Service) -> Service:
    return _desired_state_set(actor, service, DesiredState.STOPPED, "StopRequested", "stop", "StopService")


@transaction.atomic
def service_restart(*, actor, service: Service) -> Service:
    service = Service.objects.select_for_update().get(pk=service.pk)
    require_unlocked(service, "RestartService")
    event_record(service=service, reason="RestartRequested", message=f"Requested restart of {service.name}",
                 actor=actor)
    return desired_state_changed(service, restart_requested_at=timezone.now())


@transaction.atomic
def service_delete(*, actor, service: Service) -> Service:
    """Deletion is a finalizer: mark it here; the deployer removes what runs, then the rows."""
    service = Service.objects.select_for_update().get(pk=service.pk)
    require_unlocked(service, "DeleteService")
    if service.deletion_requested_at is not None:
        return service
    pool_delete_checked(service)
    event_record(service=service, reason="DeletionRequested", message=f"Requested deletion of {service.name}",
                 actor=actor)
    traffic_references_changed(service)
    return desired_state_changed(service, deletion_requested_at=timezone.now(), phase=Phase.DELETING)


@transaction.atomic
def service_instances_restart(*, actor, service: Service, instance_names: list[str]) -> list[Instance]:
    """EAS DeleteServiceInstances: the named instances are deleted and the deployer replaces them."""
    if not instance_names:
        raise InvalidRequest.at("InstanceList", "name at least one instance")
    service = Service.objects.select_for_update().get(pk=service.pk)
    require_unlocked(service, "DeleteServiceInstances")
    instances = list(service.instances.filter(name__in=instance_names))
    missing = sorted(set(instance_names) - {instance.name for instance in instances})
    if missing:
        raise NotFound(f"No instance named {', '.join(missing)} in service {service.name}.", code="InstanceNotFound")
    for instance in instances:
        instance.restart_requested_at = timezone.now()
        instance.save(update_fields=["restart_requested_at", "updated_at"])
        event_record(service=service, reason="InstanceRestartRequested",
                     message=f"Requested restart of instance {instance.name}", instance_name=instance.name,
                     actor=actor)
    desired_state_changed(service)
    return instances
