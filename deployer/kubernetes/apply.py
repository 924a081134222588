"""Apply rendered manifests, prune what is no longer desired, delete everything of a service.

Server-side apply makes "read, compare, then patch" the API server's job: applying an unchanged object
changes nothing (same resourceVersion), and only Ferry's own fields are touched. Pruning lists every kind
Ferry manages by the service's labels and deletes what the render did not produce, skipping objects that
another controller owns (Knative's own Deployments and Services inherit the template's labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .meta import FIELD_MANAGER, MANAGED_BY

if TYPE_CHECKING:  # the client imports deployer.drivers, which imports this package
    from .client import KubeApi

# Routes first: traffic leaves a version before its Deployment and Service go.
MANAGED_KINDS = (
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1", "DestinationRule"),
    ("serving.knative.dev/v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    # After the pods' owners: the policy keeps guarding pods that are still terminating.
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "Secret"),  # the service token (token.py): goes last, once no pod of the service needs it
)


@dataclass
class ApplyResult:
    applied: list[str] = field(default_factory=list)  # "Kind/name"
    created: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)


def apply_manifests(api: KubeApi, manifests: list[dict], *, namespace: str, selector: str) -> ApplyResult:
    result = ApplyResult()
    # Read first: what exists tells created from updated, and what to prune. Applying an object that did
    # not change is a no-op on the server (same resourceVersion), so every rendered object is applied.
    existing = managed_objects(api, namespace=namespace, selector=selector)
    present = {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in existing}
    for manifest in manifests:
        api.apply(manifest)
        name = f'{manifest["kind"]}/{manifest["metadata"]["name"]}'
        result.applied.append(name)
        if (manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"]) not in present:
            result.created.append(name)
    wanted = {(m["apiVersion"], m["kind"], m["metadata"]["name"]) for m in manifests}
    for obj in existing:
        if (obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) not in wanted:
            api.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace)
            result.pruned.append(f'{obj["kind"]}/{obj["metadata"]["name"]}')
    return result


def managed_objects(api: KubeApi, *, namespace: str, selector: str) -> list[dict]:
    """Ferry's objects of one service, in MANAGED_KINDS order; kinds the cluster does not serve are skipped
    (a raw cluster without Knative has no Knative Services to prune)."""
    found = []
    for api_version, kind in MANAGED_KINDS:
        if not api.served(api_version, kind):
            continue
        for obj in api.list(api_version, kind, namespace, label_selector=selector):
            meta = obj.get("metadata") or {}
            if meta.get("ownerReferences") or (meta.get("labels") or {}).get(MANAGED_BY) != FIELD_MANAGER:
                continue  # made by a controller from Ferry's labels, not by Ferry: its owner cleans it up
            found.append({**obj, "apiVersion": api_version, "kind": kind})
    return found


def delete_all(api: KubeApi, *, namespace: str, selector: str) -> bool:
    """Deletes every object of the service; True once nothing is left, pods included (the finalizer then
    removes Ferry's rows). Called again by the reconciler until then."""
    for obj in managed_objects(api, namespace=namespace, selector=selector):
        api.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace)
    if managed_objects(api, namespace=namespace, selector=selector):
        return False
    return not api.list("v1", "Pod", namespace, label_selector=selector)
