"""EAS invocation paths on raw clusters: `/api/predict/<service>[/<rest>]` reaches the pod as `/<rest>` (`/`
without one), as on EAS and behind Ferry's gateway, with the same versions, weights, timeouts and mirroring as
any other path. Requests are followed through the rendered routes by the rules of each API (routing.py)."""

import pytest

from deployer.kubernetes.desired import MirrorDesired
from deployer.kubernetes.render import render
from deployer.kubernetes.volumes import RenderError
from tests.kubernetes import routing
from tests.kubernetes.helpers import by_kind, desired_for, example
from tests.kubernetes.schemas import validate

APIS = ("gateway-api", "istio")


def _canary(name="custom_container", traffic_api="gateway-api", **extra):
    doc = example(name)
    new = {**doc, "metadata": {**doc["metadata"], "cpu": 2}}
    return desired_for(doc, traffic_api=traffic_api, versions=[(1, 90, 2, doc), (2, 10, 1, new)], **extra)


def _route(desired):
    manifests = render(desired)
    for manifest in manifests:
        validate(manifest)
    if desired.cluster.traffic_api == "istio":
        service = by_kind(manifests, "VirtualService")
        return lambda path, headers=None: routing.virtual_service(service, path, headers)
    route = by_kind(manifests, "HTTPRoute")
    return lambda path, headers=None: routing.http_route(route, path, headers)


CALLS = [  # (path, headers, versions by percent, what the pod receives)
    ("/api/predict/echo_app", {}, {1: 90, 2: 10}, "/"),
    ("/api/predict/echo_app/", {}, {1: 90, 2: 10}, "/"),
    ("/api/predict/echo_app?x=1", {}, {1: 90, 2: 10}, "/?x=1"),
    ("/api/predict/echo_app/v1/chat/completions?x=1", {}, {1: 90, 2: 10}, "/v1/chat/completions?x=1"),
    ("/api/predict/echo_app/api/predict/echo_app", {}, {1: 90, 2: 10}, "/api/predict/echo_app"),
    ("/api/predict/echo_app/v1", {"Ferry-Version": "2"}, {2: 100}, "/v1"),
    ("/api/predict/echo_app", {"ferry-version": "1"}, {1: 100}, "/"),
    # Not this service's EAS path: passed on unchanged, by the same weights and header rules.
    ("/v1/models/echo_app:predict", {}, {1: 90, 2: 10}, "/v1/models/echo_app:predict"),
    ("/v1/models/echo_app:predict", {"ferry-version": "2"}, {2: 100}, "/v1/models/echo_app:predict"),
    ("/api/predict/echo-app/x", {}, {1: 90, 2: 10}, "/api/predict/echo-app/x"),  # the DNS name is not the EAS name
    ("/api/predict/echo_appx/y", {}, {1: 90, 2: 10}, "/api/predict/echo_appx/y"),
    ("/", {}, {1: 90, 2: 10}, "/"),
]


@pytest.mark.parametrize("traffic_api", APIS)
@pytest.mark.parametrize(("path", "headers", "versions", "upstream"), CALLS)
def test_an_eas_call_reaches_the_pod_without_its_prefix_by_the_same_versions(traffic_api, path, headers,
                                                                             versions, upstream):
    routed = _route(_canary(traffic_api=traffic_api))(path, headers)
    assert (routed.versions, routed.path) == (versions, upstream)


@pytest.mark.parametrize("traffic_api", APIS)
def test_both_forms_keep_the_timeout_and_the_mirroring(traffic_api):
    mirror = MirrorDesired(("shadow_model", "ferry-team-b/other"), 25)
    route = _route(_canary(traffic_api=traffic_api, mirror=mirror))
    prefixed, plain = route("/api/predict/echo_app/score"), route("/score")
    assert prefixed.mirrors == plain.mirrors == (("shadow-model", 25.0), ("other", 25.0))
    assert prefixed.timeout == plain.timeout == "5s"
    pinned = {"ferry-version": "2"}
    assert route("/api/predict/echo_app/score", pinned).timeout == route("/score", pinned).timeout == "5s"


@pytest.mark.parametrize("traffic_api", APIS)
def test_a_service_named_iris_leaves_iris_sklearn_alone(traffic_api):
    doc = {**example("iris_sklearn"), "name": "iris"}
    route = _route(desired_for(doc, traffic_api=traffic_api))
    assert route("/api/predict/iris_sklearn/x").path == "/api/predict/iris_sklearn/x"
    assert route("/api/predict/iris_sklearn").path == "/api/predict/iris_sklearn"
    assert route("/api/predict/iris/x").path == "/x"


def test_the_httproute_strips_the_prefix_with_one_path_prefix_match_per_rule():
    rules = by_kind(render(_canary()), "HTTPRoute")["spec"]["rules"]
    strip = {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}
    rewriting = [rule for rule in rules if strip in rule.get("filters", [])]
    assert [rule["name"] for rule in rewriting] == ["eas-version-1", "eas-version-2", "eas-weights"]
    # The CRD's CEL rule (not evaluated by the schema tests): exactly one match, a PathPrefix.
    assert all(len(rule["matches"]) == 1 and rule["matches"][0]["path"] == {
        "type": "PathPrefix", "value": "/api/predict/echo_app"} for rule in rewriting)
    eas_weights, weights = rules[-2:]
    assert eas_weights["backendRefs"] == weights["backendRefs"]
    assert [(b["name"], b["weight"]) for b in weights["backendRefs"]] == [("echo-app-v1", 90), ("echo-app-v2", 10)]


def test_the_virtual_service_matches_the_exact_path_and_the_prefix_with_a_slash():
    http = by_kind(render(_canary(traffic_api="istio")), "VirtualService")["spec"]["http"]
    assert [rule["name"] for rule in http] == ["eas-version-1", "eas-version-2", "version-1", "version-2",
                                               "eas-weights", "weights"]
    eas_weights = http[-2]
    assert eas_weights["match"] == [{"uri": {"exact": "/api/predict/echo_app"}},
                                    {"uri": {"prefix": "/api/predict/echo_app/"}}]
    assert eas_weights["rewrite"] == {"uri": "/"}
    assert http[0]["match"][1] == {"uri": {"prefix": "/api/predict/echo_app/"},
                                   "headers": {"ferry-version": {"exact": "1"}}}


def test_seven_versions_fit_one_httproute_and_an_eighth_is_a_named_error():
    doc = example("iris_sklearn")
    seven = [(n, 100 // 7 + (n <= 100 % 7), 1, doc) for n in range(1, 8)]
    route = _route(desired_for(doc, versions=seven))
    assert route("/api/predict/iris_sklearn/x", {"ferry-version": "7"}).versions == {7: 100}
    eight = [(n, 100 // 8 + (n <= 100 % 8), 1, doc) for n in range(1, 9)]
    with pytest.raises(RenderError, match="versions: 8 versions .* room for 7"):
        render(desired_for(doc, versions=eight))
    istio = _route(desired_for(doc, traffic_api="istio", versions=eight))
    assert istio("/api/predict/iris_sklearn/x", {"ferry-version": "8"}).path == "/x"


@pytest.mark.parametrize(("path", "prefix", "replacement", "expected"), [
    ("/foo/bar", "/foo", "/xyz", "/xyz/bar"), ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
    ("/foo/", "/foo", "/xyz", "/xyz/"), ("/foo/bar", "/foo", "", "/bar"), ("/foo", "/foo", "", "/"),
    ("/foo/", "/foo", "/", "/"), ("/foo", "/foo", "/", "/"),
    ("/foo/bar", "/foo", "/", "/bar")])  # Ferry's case: not in the table, and never `//bar`
def test_the_routing_model_rewrites_as_the_gateway_api_table_says(path, prefix, replacement, expected):
    """HTTPPathModifier's examples in the Gateway API reference, so the model the tests above lean on is
    the specification's."""
    route = {"spec": {"rules": [{"name": "r", "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                                 "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {
                                     "type": "ReplacePrefixMatch", "replacePrefixMatch": replacement}}}],
                                 "backendRefs": [{"name": "s-v1"}], "timeouts": {"request": "1s"}}]}}
    assert routing.http_route(route, path).path == expected
