"""From Ferry's rows to the renderers' plain data: ServiceDesired for one service on one cluster.

The only module of this package that reads Django models (duck-typed: a Service with `versions`, `cluster`,
`project`); everything it returns is plain data the pure renderers take.
"""

from __future__ import annotations

import hashlib
import re

from deployer.rollout import Plan, steady_plan
from services.scale import service_instance_count

from .desired import (
    DEFAULT_METRICS,
    ClusterSettings,
    GatewayRef,
    MetricSpec,
    MirrorDesired,
    ServiceDesired,
    VersionDesired,
)
from .netpol import DEFAULT_FERRY_NAMESPACE, DEFAULT_INGRESS_NAMESPACES, DEFAULT_MONITORING_NAMESPACES
from .tenancy import DEFAULT_POD_SECURITY

DEFAULT_NAMESPACE_TEMPLATE = "ferry-{project}"


def cluster_settings(cluster) -> ClusterSettings:
    """Cluster.flavor / traffic_api and the documented keys of Cluster.settings (docs/kubernetes.md)."""
    raw = cluster.settings or {}
    gateway = raw.get("gateway") or None
    if isinstance(gateway, str):  # "namespace/name" or "name"
        namespace, _, name = gateway.rpartition("/")
        gateway = {"name": name, "namespace": namespace}
    metrics = dict(DEFAULT_METRICS)
    for eas_name, spec in (raw.get("metrics") or {}).items():
        metrics[eas_name] = MetricSpec(type=spec.get("type", "External"), name=spec["name"],
                                       selector=dict(spec.get("selector") or {}), scale=float(spec.get("scale", 1)))
    return ClusterSettings(
        flavor=cluster.flavor or "raw",
        traffic_api=cluster.traffic_api or "gateway-api",
        gateway=GatewayRef(gateway["name"], gateway.get("namespace", "")) if gateway else None,
        domain=raw.get("domain", ""),
        prometheus_url=raw.get("prometheus_url", ""),
        runtime_image=raw.get("runtime_image", ""),
        node_selector=dict(raw.get("node_selector") or {}),
        tolerations=tuple(raw.get("tolerations") or ()),
        pod_annotations=dict(raw.get("pod_annotations") or {}),
        pod_labels=dict(raw.get("pod_labels") or {}),
        image_pull_secrets=tuple(raw.get("image_pull_secrets") or ()),
        service_account=raw.get("service_account", ""),
        model_cache_pvc=raw.get("model_cache_pvc", ""),
        drain_seconds=int(raw.get("drain_seconds", 5)),
        metrics=metrics,
        host_path_roots=tuple(raw.get("host_path_roots") or ()),
        pod_security=raw.get("pod_security") or DEFAULT_POD_SECURITY,
        ingress_namespaces=tuple(_setting(raw, "ingress_namespaces", DEFAULT_INGRESS_NAMESPACES)),
        ferry_namespace=_setting(raw, "ferry_namespace", DEFAULT_FERRY_NAMESPACE),
        monitoring_namespaces=tuple(_setting(raw, "monitoring_namespaces", DEFAULT_MONITORING_NAMESPACES)),
        **fetch_limits(raw),
    )


def _setting(raw: dict, key: str, default):
    """The admin's value; a key absent (or set to null) takes the default, an empty list stays empty."""
    value = raw.get(key)
    return default if value is None else value


def fetch_limits(raw: dict) -> dict:
    """The in-pod fetch policy: the cluster's own keys, else the control plane's FERRY_FETCH_* settings, so a
    model a cluster's pod fetches is held to the same rules as one Ferry fetches for its own hosts."""
    from django.conf import settings

    return {
        "fetch_allowed_networks": tuple(_setting(raw, "fetch_allowed_networks",
                                                 settings.FERRY_FETCH_ALLOWED_NETWORKS)),
        "fetch_max_bytes": _setting(raw, "fetch_max_bytes", settings.FERRY_FETCH_MAX_BYTES),
        "fetch_timeout_seconds": _setting(raw, "fetch_timeout_seconds", settings.FERRY_FETCH_TIMEOUT_SECONDS),
    }


def namespace_for(cluster, project_name: str) -> str:
    """A namespace per project: `ferry-<project>` unless the cluster's settings say otherwise."""
    template = (cluster.settings or {}).get("namespace_template") or DEFAULT_NAMESPACE_TEMPLATE
    project = re.sub(r"[^a-z0-9-]+", "-", project_name.lower()).strip("-") or "default"
    namespace = template.format(project=project)
    if len(namespace) > 63:
        # Cut, and told apart by a digest of the whole name: two long names sharing a prefix stay apart.
        digest = hashlib.sha256(project_name.encode()).hexdigest()[:8]
        namespace = f"{namespace[:54].rstrip('-')}-{digest}"
    return namespace


def service_desired(service, plan: Plan | None = None) -> ServiceDesired:
    """What `service` should look like on its cluster. Without a plan (the manifests endpoint, `--dry-run`),
    the steady plan of the asked weights (Version.asked_weight) and the instance count."""
    versions = {v.number: v for v in service.versions.all()}
    if plan is None:
        total = service_instance_count(service)
        plan = steady_plan(weights={n: v.asked_weight for n, v in versions.items()}, total=total)
    running = service.desired_state == "running"
    # A version is on the cluster while it has instances wanted or traffic (a stopped service keeps its
    # serving versions' objects, at zero).
    wanted = {n for n, count in plan.replicas.items() if count > 0} | {n for n, w in plan.weights.items() if w > 0}
    chosen = tuple(
        VersionDesired(number=n, weight=plan.weights.get(n, 0), replicas=plan.replicas.get(n, 0) if running else 0,
                       service_file=versions[n].service_file)
        for n in sorted(wanted) if n in versions
    )
    mirror = service.mirror or None
    namespace = namespace_for(service.cluster, service.project.name)
    return ServiceDesired(
        name=service.name,
        namespace=namespace,
        versions=chosen,
        cluster=cluster_settings(service.cluster),
        running=running,
        autoscaler=service.autoscaler or None,
        mirror=MirrorDesired(tuple(_mirror_target(service, t, namespace) for t in mirror["targets"]),
                             int(mirror["ratio"])) if mirror else None,
        labels=dict(service.labels or {}),
        group=service.group or "",
        project=service.project.name,
        restart_token=service.restart_requested_at.isoformat() if service.restart_requested_at else "",
    )


def _mirror_target(service, target: str, namespace: str) -> str:
    """A mirror target in another project's namespace is written "namespace/name" for the renderers."""
    other = service.cluster.services.filter(name=target).select_related("project").first()
    if other is None:
        return target
    where = namespace_for(service.cluster, other.project.name)
    return target if where == namespace else f"{where}/{target}"
