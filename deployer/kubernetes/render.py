"""From a service's desired state to the manifests that make it so on its cluster. Pure.

`render(desired)` is what the driver applies, what `--dry-run` / `GET .../manifests` shows, and what the
golden tests pin down. Objects come in an order a person reads top-down and that `kubectl apply -f` could
apply as is (Services before what routes to them).
"""

from __future__ import annotations

import yaml

from .desired import ServiceDesired
from .hpa import has_hpa, hpa
from .knative import knative_service
from .meta import FIELD_MANAGER, MANAGED_BY, PROJECT_LABEL
from .netpol import network_policy
from .pool import mesh_role, render_pool
from .raw import deployment, stable_service, version_service
from .tenancy import DEFAULT_POD_SECURITY
from .traffic import destination_rule, http_route, virtual_service


def render(desired: ServiceDesired) -> list[dict]:
    if not desired.versions:
        return []
    # The model mesh (pool.py): a pool is plain Deployments on either flavor, a pool model runs nothing.
    role = mesh_role(desired)
    if role:
        return render_pool(desired) if role == "pool" else []
    if desired.cluster.flavor == "knative":
        # Stopped: no Knative Service at all (Knative would wake a revision on the next request).
        return [knative_service(desired), network_policy(desired)] if desired.running else []
    manifests = [stable_service(desired)]
    for version in sorted(desired.versions, key=lambda v: v.number):
        manifests.append(version_service(desired, version))
        manifests.append(deployment(desired, version))
        if has_hpa(desired):
            manifests.append(hpa(desired, version))
    if desired.cluster.traffic_api == "istio":
        manifests += [destination_rule(desired), virtual_service(desired)]
    else:
        manifests.append(http_route(desired))
    # Last: who may reach the pods above (netpol.py); pruned and deleted with them.
    manifests.append(network_policy(desired))
    return manifests


POD_SECURITY = "pod-security.kubernetes.io/"


def namespace_manifest(name: str, project: str = "", pod_security: str = DEFAULT_POD_SECURITY) -> dict:
    """A project's namespace. Applied before a service's objects and never pruned: other services share it.
    It enforces the cluster's Pod Security level (restricted unless an admin lowered it, tenancy.py) and
    always warns and audits at restricted, so what a lower level lets through is still reported."""
    labels = {MANAGED_BY: FIELD_MANAGER}
    if project:
        labels[PROJECT_LABEL] = project.replace("_", "-")
    labels.update({f"{POD_SECURITY}enforce": pod_security, f"{POD_SECURITY}enforce-version": "latest",
                   f"{POD_SECURITY}warn": "restricted", f"{POD_SECURITY}audit": "restricted"})
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


class _PlainDumper(yaml.SafeDumper):
    """No anchors and aliases: a person (or kubectl) reads every object whole."""

    def ignore_aliases(self, data) -> bool:
        return True


def to_yaml(manifests: list[dict]) -> str:
    """A multi-document YAML stream, keys in the order rendered (as a person expects to read them)."""
    return yaml.dump_all(manifests, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False, width=120)
