"""The NetworkPolicy in front of a service's pods: who inside the cluster may open a connection to them. Pure.

Ferry's own model server asks every caller for the service token, but the images of triton, tfserving,
torchserve, mlserver and pmml, and custom containers, answer anyone who reaches the pod. So every service gets
one policy selecting all its pods (every version: they share the service's labels), admitting ingress only
from the namespaces that carry the data plane to them (the cluster setting `ingress_namespaces`: the ingress
gateway, Knative's activator), from Ferry's own namespace (`ferry_namespace`) on the serving ports, and from
the monitoring namespaces (`monitoring_namespaces`) on the ports Ferry's scrape annotations name. Any other
pod of the cluster, another project's included, is refused by the network before the server sees a byte.

Namespaces are matched by the `kubernetes.io/metadata.name` label the API server sets on every namespace,
which no one can give another namespace.
"""

from __future__ import annotations

import re

from .desired import ServiceDesired
from .meta import dns_name, metadata, selector_labels

DEFAULT_INGRESS_NAMESPACES = ("knative-serving", "istio-system")
DEFAULT_FERRY_NAMESPACE = "ferry-system"
DEFAULT_MONITORING_NAMESPACES = ("monitoring",)
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# Knative: requests reach the queue-proxy (8012 http, 8013 h2c), which forwards to the server over the pod's
# loopback (no policy applies there); the autoscaler in knative-serving scrapes 9090, Prometheus 9091.
KNATIVE_SERVING_PORTS = (8012, 8013)
KNATIVE_AUTOSCALER_PORT = 9090
KNATIVE_METRICS_PORT = 9091
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def policy_name(desired: ServiceDesired) -> str:
    return f"{dns_name(desired.name)}-ingress"


def network_policy(desired: ServiceDesired) -> dict:
    """The policy of one service (both flavors); `render()` adds it beside the service's other objects."""
    from .pod import metrics_endpoint, serving_port  # pod.py imports volumes.py, which needs nothing of this

    cluster = desired.cluster
    knative = cluster.flavor == "knative"
    docs = [v.service_file for v in sorted(desired.versions, key=lambda v: v.number)]
    if knative:
        serving = list(KNATIVE_SERVING_PORTS)
        ingress_only = [KNATIVE_AUTOSCALER_PORT]
        scraped = [KNATIVE_METRICS_PORT]
    else:
        serving = [serving_port(doc) for doc in docs]
        ingress_only = []
        scraped = []
    scraped += [endpoint[0] for endpoint in map(metrics_endpoint, docs) if endpoint]
    ingress_namespaces = _unique(cluster.ingress_namespaces)
    rules = []
    front = _unique([*ingress_namespaces, cluster.ferry_namespace] if cluster.ferry_namespace
                    else ingress_namespaces)
    if front:
        rules.append(ingress_rule(front, serving))
    if ingress_only and ingress_namespaces:
        rules.append(ingress_rule(ingress_namespaces, ingress_only))
    if scraped and cluster.monitoring_namespaces:
        rules.append(ingress_rule(_unique(cluster.monitoring_namespaces), scraped))
    # No rule at all still selects the pods with policyTypes Ingress: then nothing may reach them.
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(desired, policy_name(desired)),
            "spec": {"podSelector": {"matchLabels": selector_labels(desired)}, "policyTypes": ["Ingress"],
                     "ingress": rules}}


def ingress_rule(namespaces: list[str], ports: list[int]) -> dict:
    return {"from": [{"namespaceSelector": {"matchExpressions": [
                {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": list(namespaces)}]}}],
            "ports": [{"protocol": "TCP", "port": port} for port in sorted(set(ports))]}


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))


def namespaces_problem(value: object, *, many: bool) -> str | None:
    """Why an admin's namespace setting cannot be stored, or None."""
    names = value if many else [value]
    if many and not isinstance(value, list):
        return "must be a list of namespace names"
    for name in names:
        if not isinstance(name, str) or len(name) > 63 or not _NAMESPACE.match(name):
            return (f'"{name}" is not a namespace name (1-63 lowercase letters, digits or "-", starting and '
                    "ending with a letter or digit)")
    return None


def cluster_settings_problems(settings: dict) -> list[tuple[str, str]]:
    problems = []
    for key, many in (("ingress_namespaces", True), ("monitoring_namespaces", True), ("ferry_namespace", False)):
        if key in settings and settings[key] is not None:
            problem = namespaces_problem(settings[key], many=many)
            if problem:
                problems.append((key, problem))
    return problems
