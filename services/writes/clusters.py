"""Writes to clusters: register a Kubernetes cluster (kubeconfig encrypted at rest, or the cluster Ferry runs
in), change its settings, remove it. Clusters are shared infrastructure: only superusers change them."""

from __future__ import annotations

import re

from django.db import IntegrityError, transaction
from django.utils import timezone

from services.encryption import encrypt
from services.errors import AlreadyExists, Conflict, Forbidden, InvalidRequest
from services.models import Cluster, ClusterFlavor, ClusterKind, Service, TrafficApi
from services.ports import deployer

NAME = re.compile(r"^[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?$")
SETTING_TYPES = {
    "prometheus_url": str, "gateway": (str, dict), "domain": str, "runtime_image": str, "node_selector": dict,
    "tolerations": list, "pod_annotations": dict, "pod_labels": dict, "image_pull_secrets": list,
    "service_account": str, "model_cache_pvc": str, "drain_seconds": int, "metrics": dict,
    "namespace_template": str, "context": str, "host_path_roots": list, "pod_security": str,
    "ingress_namespaces": list, "ferry_namespace": str, "monitoring_namespaces": list,
    "fetch_allowed_networks": list, "fetch_max_bytes": int, "fetch_timeout_seconds": (int, float),
}


def cluster_register(*, actor, name: str, kubeconfig: str = "", in_cluster: bool = False,
                     flavor: str = ClusterFlavor.RAW, traffic_api: str = TrafficApi.GATEWAY_API,
                     settings: dict | None = None) -> Cluster:
    _require_admin(actor)
    if not NAME.match(name or ""):
        raise InvalidRequest.at("ClusterName", "must be 1-63 lowercase letters, digits, '-' or '_'")
    if bool(kubeconfig) == bool(in_cluster):
        raise InvalidRequest.at("Kubeconfig", "give a kubeconfig, or InCluster for the cluster Ferry runs in "
                                              "(not both)")
    if kubeconfig:
        _check_kubeconfig(kubeconfig)
    stored = _checked_settings(settings or {}, flavor, traffic_api)
    if in_cluster:
        stored["in_cluster"] = True
    try:
        with transaction.atomic():
            return Cluster.objects.create(name=name, kind=ClusterKind.KUBERNETES, flavor=flavor,
                                          traffic_api=traffic_api, settings=stored,
                                          kubeconfig_encrypted=encrypt(kubeconfig) if kubeconfig else "")
    except IntegrityError:
        raise AlreadyExists(f'A cluster named "{name}" already exists.') from None


def cluster_update(*, actor, cluster: Cluster, flavor: str | None = None, traffic_api: str | None = None,
                   settings: dict | None = None, kubeconfig: str | None = None) -> Cluster:
    """Changes how services are rendered there: every service of the cluster is reconciled again."""
    _require_admin(actor)
    if cluster.kind != ClusterKind.KUBERNETES:
        raise InvalidRequest.at("ClusterName", f"cluster {cluster.name} is {cluster.kind}; only Kubernetes "
                                               "clusters have these settings")
    flavor, traffic_api = flavor or cluster.flavor, traffic_api or cluster.traffic_api
    merged = {**cluster.settings, **(settings or {})} if settings is not None else dict(cluster.settings)
    in_cluster = merged.pop("in_cluster", False)
    stored = _checked_settings({k: v for k, v in merged.items() if v is not None}, flavor, traffic_api)
    if in_cluster and not kubeconfig:
        stored["in_cluster"] = True
    if kubeconfig:
        _check_kubeconfig(kubeconfig)
        cluster.kubeconfig_encrypted = encrypt(kubeconfig)
    cluster.flavor, cluster.traffic_api, cluster.settings = flavor, traffic_api, stored
    with transaction.atomic():
        cluster.save()
        # Not a change of any service's intent (no new generation), but what it renders to changed.
        Service.objects.filter(cluster=cluster).update(next_reconcile_at=timezone.now())
    return cluster


def cluster_delete(*, actor, cluster: Cluster) -> None:
    _require_admin(actor)
    if cluster.kind == ClusterKind.LOCAL:
        raise Conflict("The local cluster cannot be removed.")
    if cluster.services.exists():
        raise Conflict(f"Cluster {cluster.name} still has {cluster.services.count()} service(s): delete them first.")
    cluster.delete()


def _require_admin(actor) -> None:
    if actor is not None and not actor.is_superuser:
        raise Forbidden("Only administrators register and change clusters.")


def _check_kubeconfig(kubeconfig: str) -> None:
    problem = deployer().kubeconfig_problem(kubeconfig)
    if problem:
        raise InvalidRequest.at("Kubeconfig", problem)


def _checked_settings(settings: dict, flavor: str, traffic_api: str) -> dict:
    """Known keys of the right types, and a render-ready whole (the same parsing the driver does)."""
    errors = []
    for key, value in settings.items():
        if key not in SETTING_TYPES:
            errors.append({"Path": f"Settings.{key}", "Message": f"unknown setting; known: {', '.join(SETTING_TYPES)}"})
        elif not isinstance(value, SETTING_TYPES[key]) or isinstance(value, bool):
            errors.append({"Path": f"Settings.{key}", "Message": "has the wrong type"})
    if flavor not in ClusterFlavor.values:
        errors.append({"Path": "Flavor", "Message": f"must be one of {', '.join(ClusterFlavor.values)}"})
    if traffic_api not in TrafficApi.values:
        errors.append({"Path": "TrafficApi", "Message": f"must be one of {', '.join(TrafficApi.values)}"})
    if not errors:
        problems = deployer().cluster_settings_problems(flavor=flavor, traffic_api=traffic_api, settings=settings)
        errors += [{"Path": f"Settings.{key}" if key else "Settings", "Message": message} for key, message in problems]
    if errors:
        raise InvalidRequest("; ".join(f"{e['Path']}: {e['Message']}" for e in errors), errors=errors)
    return dict(settings)
