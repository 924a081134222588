"""The `raw` flavor: per version a Deployment and a Service, plus one stable Service for the whole service.
Traffic (weights, mirror) is in `traffic.py`, scaling in `hpa.py`. Pure.
"""

from __future__ import annotations

from . import llm
from .desired import ServiceDesired, VersionDesired
from .hpa import has_hpa
from .meta import dns_name, metadata, selector_labels, version_labels, version_name
from .pod import metrics_endpoint, pod_annotations, pod_spec
from .volumes import RenderError

SERVICE_PORT = 80


def deployment(desired: ServiceDesired, version: VersionDesired) -> dict:
    if (version.service_file.get("metadata") or {}).get("container_concurrency"):
        # Nothing in front of a raw Deployment's pods queues requests per pod (Knative's queue-proxy does).
        raise RenderError("metadata.container_concurrency",
                          "a per-instance request limit needs a queue in front of each instance: on Kubernetes "
                          "use a cluster of flavor knative (containerConcurrency), or remove it")
    name = version_name(desired, version.number)
    labels = version_labels(desired, version.number)
    spec: dict = {}
    if not desired.running:
        spec["replicas"] = 0
    elif not has_hpa(desired):
        spec["replicas"] = version.replicas
    # With an HPA, replicas is left out of the applied configuration: server-side apply then leaves the field
    # to the HPA (its manager), instead of Ferry and the HPA fighting over it on every reconcile.
    spec.update({
        "selector": {"matchLabels": {**selector_labels(desired), "ferry.dev/version": str(version.number)}},
        "strategy": _strategy(version.service_file),
        # Versions are immutable: a Deployment only rolls its pods on a restart request.
        "revisionHistoryLimit": 2,
        **_progress_deadline(version.service_file),
        "template": {
            "metadata": _template_metadata(labels, pod_annotations(desired, version, knative=False)),
            "spec": pod_spec(desired, version, knative=False),
        },
    })
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(desired, name, number=version.number),
            "spec": spec}


def version_service(desired: ServiceDesired, version: VersionDesired) -> dict:
    """The version's own endpoint: what weights point at (HTTPRoute backends) and tests call directly."""
    name = version_name(desired, version.number)
    selector = {**selector_labels(desired), "ferry.dev/version": str(version.number)}
    return _service(desired, name, selector, version.service_file, number=version.number)


def stable_service(desired: ServiceDesired) -> dict:
    """`<service>`: selects every version's pods. The mesh splits its traffic by weight (VirtualService
    subsets, or an HTTPRoute whose parent is this Service); without a mesh it spreads over all pods."""
    return _service(desired, dns_name(desired.name), selector_labels(desired), desired.newest.service_file)


def _service(desired: ServiceDesired, name: str, selector: dict, doc: dict, number: int | None = None) -> dict:
    ports = [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP",
              "appProtocol": "http"}]
    annotations = {}
    scrape = metrics_endpoint(doc)
    if scrape and number is not None:
        # Prometheus `role: endpoints` discovery (seeds 003) reads these from Services.
        annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(scrape[0]),
                       "prometheus.io/path": scrape[1]}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(desired, name, number=number,
                                                                        annotations=annotations),
            "spec": {"type": "ClusterIP", "selector": selector, "ports": ports}}


def _template_metadata(labels: dict, annotations: dict) -> dict:
    meta = {"labels": labels}
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    return meta


def _progress_deadline(doc: dict) -> dict:
    """progressDeadlineSeconds from the file's rolling_strategy; an engine's default allows its long start."""
    given = ((doc.get("metadata") or {}).get("rolling_strategy") or {}).get("progress_deadline_seconds")
    if llm.is_llm(doc):
        return {"progressDeadlineSeconds": llm.progress_deadline_seconds(doc)}
    return {"progressDeadlineSeconds": int(given)} if given else {}


def _strategy(doc: dict) -> dict:
    rolling = (doc.get("metadata") or {}).get("rolling_strategy") or {}
    # max_unavailable 0 by default: a restart never drops below the wanted count (as the local agent does).
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": rolling.get("max_surge", 1),
                                                       "maxUnavailable": rolling.get("max_unavailable", 0)}}
