"""The `raw` flavor's traffic: weights per version, version endpoints and mirroring, as a Gateway API
HTTPRoute or as an Istio VirtualService + DestinationRule (Cluster.traffic_api). Pure.

Both carry the same three things (seeds 003):
- a rule per version matching the header `ferry-version: N`, so a version at 0 % (blue-green's green) is
  reachable for testing;
- the weighted rule: every desired version's Service (HTTPRoute backends) or subset (Istio), by weight;
- mirroring: a copy of `ratio` % of requests to each target service, response discarded.
Each rule comes twice: once for EAS invocation paths, `/api/predict/<service>[/<rest>]`, which the pod
receives as `/<rest>` (`/` without one) as on EAS and behind Ferry's own gateway, and once for any other
path, passed unchanged (V1/V2 paths, or a client that already calls the pod's own paths).
The route is attached to the stable Service (in-mesh callers: GAMMA for the Gateway API, the `mesh` gateway
for Istio) and, when the cluster names one, to its ingress gateway with host `<service>.<namespace>.<domain>`.
"""

from __future__ import annotations

import math

from . import llm
from .desired import ServiceDesired, VersionDesired
from .meta import VERSION_HEADER, dns_name, metadata, version_name, version_tag
from .raw import SERVICE_PORT
from .volumes import RenderError

EAS_PATH = "/api/predict/"  # as Ferry's gateway (contracts/paths.py); not imported: renderers stay standalone
MAX_ROUTE_RULES = 16  # HTTPRoute spec.rules maxItems
# Rule names say which form a rule serves: `version-N` / `weights` pass the path on, `eas-*` strip the prefix.
EAS_RULE = "eas-"


def eas_path(desired: ServiceDesired) -> str:
    """What EAS strips: `/api/predict/<EAS name>` (underscores and all, not the DNS name)."""
    return EAS_PATH + desired.name


def http_route(desired: ServiceDesired) -> dict:
    name = dns_name(desired.name)
    parents = [{"group": "", "kind": "Service", "name": name, "port": SERVICE_PORT}]
    gateway = desired.cluster.gateway
    if gateway:
        parent = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.name}
        if gateway.namespace:
            parent["namespace"] = gateway.namespace
        parents.append(parent)
    versions = _ordered(desired)
    _check_rule_count(len(versions))
    timeouts = {"request": f"{_timeout_seconds(desired)}s"}
    # PathPrefix matches whole path elements (`/api/predict/iris` leaves `/api/predict/iris_sklearn` alone),
    # and ReplacePrefixMatch `/` turns `<prefix>/rest` into `/rest` and `<prefix>` into `/`. A rule with this
    # rewrite must have exactly one match, a PathPrefix (a CEL rule of the CRD): hence a rule per form.
    prefixed = {"path": {"type": "PathPrefix", "value": eas_path(desired)}}
    strip = {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}
    mirrors = _mirror_filters(desired)
    # Precedence goes to the longest path prefix, then to the most header matches, whatever the order; the
    # order is Istio's all the same (EAS rules first), for a reader comparing the two.
    rules = [{"name": f"{EAS_RULE}version-{v.number}", "matches": [{**prefixed, **_header_match(v)}],
              "filters": [strip], "backendRefs": [_backend(version_name(desired, v.number))], "timeouts": timeouts}
             for v in versions]
    rules += [{"name": f"version-{v.number}", "matches": [_header_match(v)],
               "backendRefs": [_backend(version_name(desired, v.number))], "timeouts": timeouts}
              for v in versions]
    weighted = [{**_backend(version_name(desired, v.number)), "weight": v.weight} for v in versions]
    rules.append({"name": f"{EAS_RULE}weights", "matches": [prefixed], "filters": [strip, *mirrors],
                  "backendRefs": weighted, "timeouts": timeouts})
    rules.append({"name": "weights", **({"filters": mirrors} if mirrors else {}), "backendRefs": weighted,
                  "timeouts": timeouts})
    spec: dict = {"parentRefs": parents}
    hosts = _external_hosts(desired)
    if hosts:
        spec["hostnames"] = hosts
    spec["rules"] = rules
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": metadata(desired, name),
            "spec": spec}


def virtual_service(desired: ServiceDesired) -> dict:
    name = dns_name(desired.name)
    gateways = ["mesh"]
    gateway = desired.cluster.gateway
    if gateway:
        gateways.append(f"{gateway.namespace}/{gateway.name}" if gateway.namespace else gateway.name)
    timeout = f"{_timeout_seconds(desired)}s"
    versions = _ordered(desired)
    # Istio's `prefix` is a plain string prefix (`/api/predict/iris` would take `/api/predict/iris_sklearn`),
    # hence the exact path and the prefix ending in `/`. `rewrite.uri` replaces what matched: the whole path
    # of an exact match, the prefix of a prefix match, so both become `/` + the rest; the query is kept.
    prefix = eas_path(desired)
    eas_matches = [{"uri": {"exact": prefix}}, {"uri": {"prefix": prefix + "/"}}]
    strip = {"uri": "/"}
    # Istio takes the first rule that matches: EAS rules before the header-only rules that would also
    # match their paths, and every header rule before the weights.
    http = [{"name": f"{EAS_RULE}version-{v.number}", "match": [{**m, **_istio_header(v)} for m in eas_matches],
             "rewrite": strip, "route": [{"destination": _destination(desired, name, v.number)}],
             "timeout": timeout} for v in versions]
    http += [{"name": f"version-{v.number}", "match": [_istio_header(v)],
              "route": [{"destination": _destination(desired, name, v.number)}], "timeout": timeout}
             for v in versions]
    route = [{"destination": _destination(desired, name, v.number), "weight": v.weight} for v in versions]
    mirroring = _istio_mirror(desired)
    http.append({"name": f"{EAS_RULE}weights", "match": eas_matches, "rewrite": strip, "route": route,
                 "timeout": timeout, **mirroring})
    http.append({"name": "weights", "route": route, "timeout": timeout, **mirroring})
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": metadata(desired, name),
            "spec": {"hosts": [name, *_external_hosts(desired)], "gateways": gateways, "http": http}}


def destination_rule(desired: ServiceDesired) -> dict:
    name = dns_name(desired.name)
    subsets = [{"name": version_tag(v.number), "labels": {"ferry.dev/version": str(v.number)}}
               for v in _ordered(desired)]
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": metadata(desired, name),
            "spec": {"host": _cluster_host(desired, name), "subsets": subsets}}


def _check_rule_count(versions: int) -> None:
    """Two rules per version and two for the weights must fit in one HTTPRoute; more fail on apply anyway,
    so say it in Ferry's words."""
    if 2 * versions + 2 > MAX_ROUTE_RULES:
        most = (MAX_ROUTE_RULES - 2) // 2
        raise RenderError("versions", f"{versions} versions have traffic or instances; a Gateway API HTTPRoute "
                          f"has room for {most} ({MAX_ROUTE_RULES} rules: two per version, for EAS paths and "
                          "others, and two for the weights). Move traffic off older versions, or use a cluster "
                          "whose traffic API is istio")


def _mirror_filters(desired: ServiceDesired) -> list[dict]:
    if not (desired.mirror and desired.mirror.ratio):
        return []
    # A target in another namespace needs a ReferenceGrant there (docs/kubernetes.md).
    return [{"type": "RequestMirror", "requestMirror": {"backendRef": _mirror_backend(target),
                                                        "percent": desired.mirror.ratio}}
            for target in desired.mirror.targets]


def _header_match(version: VersionDesired) -> dict:
    return {"headers": [{"type": "Exact", "name": VERSION_HEADER, "value": str(version.number)}]}


def _istio_header(version: VersionDesired) -> dict:
    return {"headers": {VERSION_HEADER: {"exact": str(version.number)}}}


def _istio_mirror(desired: ServiceDesired) -> dict:
    if not (desired.mirror and desired.mirror.ratio):
        return {}
    targets = [_mirror_host(desired, target) for target in desired.mirror.targets]
    if len(targets) == 1:  # `mirror` works on every Istio release; `mirrors` needs 1.22
        return {"mirror": targets[0], "mirrorPercentage": {"value": float(desired.mirror.ratio)}}
    return {"mirrors": [{"destination": t, "percentage": {"value": float(desired.mirror.ratio)}} for t in targets]}


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
    if llm.is_llm(doc):  # a stream lasts minutes: the engines' own default when the file does not say
        return llm.request_seconds(doc)
    keepalive = ((doc.get("metadata") or {}).get("rpc") or {}).get("keepalive") or 5000
    return max(1, math.ceil(int(keepalive) / 1000))
