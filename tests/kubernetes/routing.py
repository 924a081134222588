"""Where a rendered route sends a request, by the rules of the Gateway API and of Istio: what a cluster's proxy
would do with an HTTPRoute or a VirtualService, so that tests can assert paths and versions instead of the
shape of the YAML.

Only what Ferry renders is understood (path Exact / PathPrefix, header Exact, URLRewrite ReplacePrefixMatch,
RequestMirror; Istio uri exact / prefix, header exact, rewrite.uri, mirror / mirrors); anything else raises,
so a new field in the renderers cannot pass unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Routed:
    rule: str  # the rule's name
    versions: dict[int, int]  # version number -> percent of the requests it gets
    path: str  # what the pod receives, query included
    timeout: str
    mirrors: tuple[tuple[str, float], ...]  # (service DNS name, percent)


def http_route(route: dict, path: str, headers: dict[str, str] | None = None) -> Routed | None:
    """Gateway API precedence (HTTPRouteRule.matches): an Exact path, then the longest PathPrefix, then the most
    header matches; on a tie, the first rule in list order."""
    path_only, mark, query = path.partition("?")
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    found = []
    for index, rule in enumerate(route["spec"]["rules"]):
        for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
            if _gateway_matches(match, path_only, headers):
                kind, value = _path_match(match)
                found.append(((kind != "Exact", -len(value), -len(match.get("headers", [])), index), rule, value))
    if not found:
        return None
    _, rule, matched = min(found, key=lambda f: f[0])
    upstream, mirrors = path_only, []
    for item in rule.get("filters", []):
        if item["type"] == "URLRewrite" and set(item["urlRewrite"]) == {"path"} \
                and item["urlRewrite"]["path"]["type"] == "ReplacePrefixMatch":
            upstream = _replace_prefix(path_only, matched, item["urlRewrite"]["path"]["replacePrefixMatch"])
        elif item["type"] == "RequestMirror":
            mirror = item["requestMirror"]
            mirrors.append((mirror["backendRef"]["name"], float(mirror["percent"])))
        else:
            raise AssertionError(f"the model does not know the filter {item}")
    weights = {_number(b["name"], "-v"): b.get("weight", 1) for b in rule["backendRefs"]}
    return Routed(rule["name"], _percent(weights), upstream + mark + query, rule["timeouts"]["request"],
                  tuple(mirrors))


def virtual_service(service: dict, path: str, headers: dict[str, str] | None = None) -> Routed | None:
    """Istio: the first http rule with a matching entry (entries of `match` are alternatives)."""
    path_only, mark, query = path.partition("?")
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    for rule in service["spec"]["http"]:
        for match in rule.get("match") or [{}]:
            if not _istio_matches(match, path_only, headers):
                continue
            upstream = path_only
            if "rewrite" in rule:
                assert set(rule["rewrite"]) == {"uri"} and "uri" in match, "the model knows uri rewrites of uri matches"
                (kind, value), = match["uri"].items()
                # Envoy's prefix_rewrite: the matched prefix, or the whole path of an exact match, is replaced.
                upstream = rule["rewrite"]["uri"] + path_only[len(value):]
            weights = {_number(r["destination"]["subset"], "v"): r.get("weight", 100) for r in rule["route"]}
            return Routed(rule["name"], _percent(weights), upstream + mark + query, rule["timeout"],
                          _istio_mirrors(rule))
    return None


def _gateway_matches(match: dict, path: str, headers: dict[str, str]) -> bool:
    unknown = set(match) - {"path", "headers"}
    assert not unknown, f"the model does not know the matches {unknown}"
    kind, value = _path_match(match)
    if kind == "Exact":
        on_path = path == value
    else:
        assert kind == "PathPrefix", kind
        # Whole path elements: `/abc` takes `/abc`, `/abc/` and `/abc/def`, never `/abcd`.
        prefix = value.rstrip("/")
        on_path = path == prefix or path.startswith(prefix + "/")
    return on_path and all(h["type"] == "Exact" and headers.get(h["name"].lower()) == h["value"]
                           for h in match.get("headers", []))


def _path_match(match: dict) -> tuple[str, str]:
    path = match.get("path", {"type": "PathPrefix", "value": "/"})
    return path["type"], path["value"]


def _replace_prefix(path: str, prefix: str, replacement: str) -> str:
    """HTTPPathModifier.ReplacePrefixMatch: the matched path elements give way to `replacement`; one `/`
    joins them (`/foo/bar` with `/foo` -> `/` is `/bar`, and `/foo` is `/`)."""
    rest = path[len(prefix.rstrip("/")):]
    return (replacement.rstrip("/") + rest) or "/"


def _istio_matches(match: dict, path: str, headers: dict[str, str]) -> bool:
    unknown = set(match) - {"uri", "headers"}
    assert not unknown, f"the model does not know the matches {unknown}"
    if "uri" in match:
        (kind, value), = match["uri"].items()
        assert kind in ("exact", "prefix"), kind
        if not (path == value if kind == "exact" else path.startswith(value)):  # a plain string prefix
            return False
    for name, condition in match.get("headers", {}).items():
        (kind, value), = condition.items()
        assert kind == "exact", kind
        if headers.get(name.lower()) != value:
            return False
    return True


def _istio_mirrors(rule: dict) -> tuple[tuple[str, float], ...]:
    if "mirror" in rule:
        return ((rule["mirror"]["host"].split(".")[0], rule["mirrorPercentage"]["value"]),)
    return tuple((m["destination"]["host"].split(".")[0], m["percentage"]["value"]) for m in rule.get("mirrors", []))


def _number(name: str, marker: str) -> int:
    return int(name.rpartition(marker)[2])


def _percent(weights: dict[int, int]) -> dict[int, int]:
    total = sum(weights.values())
    return {number: round(100 * weight / total) if total else 0 for number, weight in weights.items()}
