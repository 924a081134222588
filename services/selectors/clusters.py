"""Reads of clusters: what a cluster is (never its kubeconfig), its health, and what a service renders to
on it (the manifests behind `--dry-run`)."""

from __future__ import annotations

from types import SimpleNamespace

from services.errors import InvalidRequest, NotFound
from services.models import Cluster, ClusterKind, Project
from services.ports import ManifestRefused, deployer
from services.servicefile import merge_update, validate_service_file

HIDDEN_SETTINGS = {"in_cluster"}


def cluster_get(*, name: str) -> Cluster:
    cluster = Cluster.objects.filter(name=name).first()
    if cluster is None:
        raise NotFound(f"Cluster {name} not found.", code="ClusterNotFound")
    return cluster


def cluster_describe(cluster: Cluster) -> dict:
    """The cluster as the API shows it. The kubeconfig is write-only: never returned, not even in part."""
    if cluster.kind == ClusterKind.LOCAL:
        connection = "local"
    else:
        connection = "in-cluster" if (cluster.settings or {}).get("in_cluster") else (
            "kubeconfig" if cluster.kubeconfig_encrypted else "none")
    return {
        "ClusterName": cluster.name, "Kind": cluster.kind, "Flavor": cluster.flavor, "TrafficApi": cluster.traffic_api,
        "Connection": connection, "IsDefault": cluster.is_default,
        "Settings": {k: v for k, v in (cluster.settings or {}).items() if k not in HIDDEN_SETTINGS},
        "ServiceCount": cluster.services.filter(deletion_requested_at__isnull=True).count(),
        "CreateTime": cluster.created_at.isoformat(), "UpdateTime": cluster.updated_at.isoformat(),
    }


def cluster_health(cluster: Cluster) -> dict:
    """Reads the server version and node capacity now (one attempt, no retries: a health check reports)."""
    if cluster.kind == ClusterKind.LOCAL:
        return {"Healthy": True, "Message": "the local cluster runs on this host", "ServerVersion": "",
                "Nodes": 1, "ReadyNodes": 1, "Capacity": {}, "Allocatable": {}, "MissingApis": []}
    return deployer().cluster_health(cluster)


def service_manifests(service) -> tuple[str, list[dict]]:
    """(namespace, manifests) the service renders to on its Kubernetes cluster, as the reconciler would
    apply them now (steady state of the current weights)."""
    _require_kubernetes(service.cluster)
    return _rendered(service)


def service_file_manifests(*, cluster: Cluster, project: Project, document: object,
                           current=None) -> tuple[str, list[dict]]:
    """What a service file would render to, before it is created (`create --dry-run`), or what an update
    of `current` would once rolled out (`modify --dry-run`): the new file as the only version, at 100 %."""
    _require_kubernetes(cluster)
    if current is not None:  # the current labels join the file, as UpdateService applies a patch
        service_file = merge_update({**current.spec, **({"labels": current.labels} if current.labels else {})},
                                    document)
    else:
        service_file = validate_service_file(document)
    number = (max((v.number for v in current.versions.all()), default=0) + 1) if current is not None else 1
    version = SimpleNamespace(number=number, weight=100, asked_weight=100, service_file=service_file)
    draft = SimpleNamespace(
        name=service_file["name"], cluster=cluster, project=project, desired_state="running",
        instance_count=service_file["metadata"]["instance"], autoscaler=service_file.get("autoscaler"),
        autoscaled_instances=None, cron_scaler=None, mirror=current.mirror if current is not None else None,
        labels=service_file.get("labels") or {}, group=service_file["metadata"].get("group", ""),
        restart_requested_at=None, versions=SimpleNamespace(all=lambda: [version]),
    )
    return _rendered(draft)


def _rendered(service) -> tuple[str, list[dict]]:
    try:
        return deployer().service_manifests(service)
    except ManifestRefused as exc:
        raise InvalidRequest.at(exc.path, exc.message, code="InvalidForKubernetes") from None


def _require_kubernetes(cluster: Cluster) -> None:
    if cluster.kind != ClusterKind.KUBERNETES:
        raise InvalidRequest(f"Cluster {cluster.name} is {cluster.kind}: only Kubernetes clusters render "
                             "manifests.", code="NotKubernetes")
