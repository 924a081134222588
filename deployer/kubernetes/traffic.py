"""The `raw` flavor's traffic: weights per version, version endpoints and mirroring, as a Gateway API
HTTPRoute or as an Istio VirtualService + DestinationRule (Cluster.traffic_api). Pure.

Both carry the same three things (seeds 003):
- a rule per version matching the header `ferry-version: N`, so a version at 0 % (blue-green's green) is
  reachable for testing;
- the weighted rule: every desired version's Service (HTTPRoute backends) or subset (Istio), by weight;
- mirroring: a copy of `ratio` % of requests to each target service, response discarded.
The route is attached to the stable Service (in-mesh callers: GAMMA for the Gateway API, the `mesh` gateway
for Istio) and, when the cluster names one, to its ingress gateway with host `<service>.<namespace>.<domain>`.
"""

from __future__ import annotations

import math

from .desired import ServiceDesired
from .meta import VERSION_HEADER, dns_name, metadata, version_name, version_tag
from .raw import SERVICE_PORT


def http_route(desired: ServiceDesired) -> dict:
    name = dns_name(desired.name)
    parents = [{"group": "", "kind": "Service", "name": name, "port": SERVICE_PORT}]
    gateway = desired.cluster.gateway
    if gateway:
        parent = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.name}
        if gateway.namespace:
            parent["namespace"] = gateway.namespace
        parents.append(parent)
    rules = [{"name": f"version-{v.number}",
              "matches": [{"headers": [{"type": "Exact", "name": VERSION_HEADER, "value": str(v.number)}]}],
              "backendRefs": [_backend(version_name(desired, v.number))]} for v in _ordered(desired)]
    weighted: dict = {"name": "weights",
                      "backendRefs": [{**_backend(version_name(desired, v.number)), "weight": v.weight}
                                      for v in _ordered(desired)],
                      "timeouts": {"request": f"{_timeout_seconds(desired)}s"}}
    if desired.mirror and desired.mirror.ratio:
        # A target in another namespace needs a ReferenceGrant there (docs/kubernetes.md).
        weighted["filters"] = [{"type": "RequestMirror", "requestMirror": {
            "backendRef": _mirror_backend(target), "percent": desired.mirror.ratio}}
            for target in desired.mirror.targets]
    spec: dict = {"parentRefs": parents}
    hosts = _external_hosts(desired)
    if hosts:
        spec["hostnames"] = hosts
    spec["rules"] = rules + [weighted]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": metadata(desired, name),
            "spec": spec}


def virtual_service(desired: ServiceDesired) -> dict:
    name = dns_name(desired.name)
    gateways = ["mesh"]
    gateway = desired.cluster.gateway
    if gateway:
        gateways.append(f"{gateway.namespace}/{gateway.name}" if gateway.namespace else gateway.name)
    timeout = f"{_timeout_seconds(desired)}s"
    http = [{"name": f"version-{v.number}",
             "match": [{"headers": {VERSION_HEADER: {"exact": str(v.number)}}}],
             "route": [{"destination": _destination(desired, name, v.number)}], "timeout": timeout}
            for v in _ordered(desired)]
    weighted: dict = {"name": "weights",
                      "route": [{"destination": _destination(desired, name, v.number), "weight": v.weight}
                                for v in _ordered(desired)],
                      "timeout": timeout}
    if desired.mirror and desired.mirror.ratio:
        targets = [_mirror_host(desired, target) for target in desired.mirror.targets]
        if len(targets) == 1:  # `mirror` works on every Istio release; `mirrors` needs 1.22
            weighted["mirror"] = targets[0]
            weighted["mirrorPercentage"] = {"value": float(desired.mirror.ratio)}
        else:
            weighted["mirrors"] = [{"destination": t, "percentage": {"value": float(desired.mirror.ratio)}}
                                   for t in targets]
    http.append(weighted)
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": metadata(desired, name),
            "spec": {"hosts": [name, *_external_hosts(desired)], "gateways": gateways, "http": http}}


def destination_rule(desired: ServiceDesired) -> dict:
    name = dns_name(desired.name)
    subsets = [{"name": version_tag(v.number), "labels": {"ferry.dev/version": str(v.number)}}
               for v in _ordered(desired)]
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": metadata(desired, name),
            "spec": {"host": _cluster_host(desired, name), "subsets": subsets}}


def _ordered(desired: ServiceDesired):
    return sorted(desired.versions, key=lambda v: v.number)


def _backend(service: str) -> dict:
    return {"group": "", "kind": "Service", "name": service, "port": SERVICE_PORT}


def _mirror_backend(target: str) -> dict:
    namespace, _, name = target.rpartition("/")
    backend = _backend(dns_name(name))
    if namespace:
        backend["namespace"] = namespace
    return backend


def _destination(desired: ServiceDesired, name: str, number: int) -> dict:
    return {"host": _cluster_host(desired, name), "subset": version_tag(number), "port": {"number": SERVICE_PORT}}


def _mirror_host(desired: ServiceDesired, target: str) -> dict:
    namespace, _, name = target.rpartition("/")
    host = f"{dns_name(name)}.{namespace or desired.namespace}.svc.cluster.local"
    return {"host": host, "port": {"number": SERVICE_PORT}}


def _cluster_host(desired: ServiceDesired, name: str) -> str:
    return f"{name}.{desired.namespace}.svc.cluster.local"


def _external_hosts(desired: ServiceDesired) -> list[str]:
    if not (desired.cluster.domain and desired.cluster.gateway):
        return []
    return [f"{dns_name(desired.name)}.{desired.namespace}.{desired.cluster.domain}"]


def _timeout_seconds(desired: ServiceDesired) -> int:
    """EAS rpc.keepalive: the longest a request may take (ms)."""
    return request_timeout_seconds(desired.newest.service_file)


def request_timeout_seconds(doc: dict) -> int:
    keepalive = ((doc.get("metadata") or {}).get("rpc") or {}).get("keepalive") or 5000
    return max(1, math.ceil(int(keepalive) / 1000))
