"""What the gateway answers itself, from memory: discovery for EAS direct connections, /metrics, health."""

from __future__ import annotations

import hmac
import json

from contracts import paths

JSON = (b"content-type", b"application/json")
TEXT = (b"content-type", b"text/plain")
# The challenge of a 401 for a service call (the EAS SDK and curl users read it).
UNAUTHORIZED = ((b"www-authenticate", b'EAS realm="ferry"'),)
_CODES = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed", 413: "TooLarge",
          431: "RequestHeaderFieldsTooLarge", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}


def error(status: int, message: str, extra=()):
    """A response of the gateway's own: (status, headers, JSON {"code", "message"})."""
    body = json.dumps({"code": _CODES.get(status, "Error"), "message": message}).encode()
    return status, [JSON, *extra], body


def metrics_refusal(gateway, authorization: bytes | None):
    """Why /metrics is refused to this caller, else None. It names every service of every project with its
    traffic, so it is served only with FERRY_GATEWAY_METRICS_TOKEN as a Bearer token (the autoscaler and the
    console read the per-second metrics from Redis, not from here)."""
    expected = gateway.settings.metrics_token
    if not expected:
        return error(404, "/metrics is off: set FERRY_GATEWAY_METRICS_TOKEN and scrape it with "
                          "Authorization: Bearer <that token>")
    presented = authorization[7:].strip() if authorization and authorization[:7].lower() == b"bearer " else b""
    if not presented or not hmac.compare_digest(presented, expected.encode()):
        return error(401, "/metrics needs Authorization: Bearer <FERRY_GATEWAY_METRICS_TOKEN>",
                     ((b"www-authenticate", b'Bearer realm="ferry-gateway-metrics"'),))
    return None


def answer(gateway, method: str, path: str, authorization: bytes | None = None):
    if path.startswith(paths.DISCOVERY_PREFIX):
        return discovery(gateway.table, path[len(paths.DISCOVERY_PREFIX):])
    if path == "/metrics":
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        refusal = metrics_refusal(gateway, authorization)
        if refusal is not None:
            return refusal

        return 200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], generate_latest(gateway.registry)
    if path == paths.OPENAI_MODELS:
        from .openai_api import models

        return models(gateway.table, method, authorization)
    if path in ("/v2/health/live", "/healthz", "/livez"):
        return 200, [TEXT], b""
    if path in ("/v2/health/ready", "/readyz"):
        return (200 if gateway.table.loaded else 503), [TEXT], b""
    if path == "/v2" and method == "GET":
        return 200, [JSON], json.dumps({"name": "ferry-gateway", "version": "1", "extensions": []}).encode()
    return error(404, f"no route for {method} {path}: use /api/predict/<service>, /v1/models/<model>:predict, "
                      "/v2/models/<model>/infer or the OpenAI API (/v1/chat/completions, /v1/completions, "
                      "/v1/embeddings, /v1/models)")


def discovery(table, name: str):
    """EAS direct connection: the ready instances with their share of traffic (the SDK balances itself):
    instances of weighted versions, each `version weight x 100 / its instances`; while no weighted version has
    one, every ready instance alike. A pool model lists none (it is reached through the gateway only)."""
    route = table.get(name.strip("/"))
    if route is None:
        return error(404, f"no service named {name}")
    versions = [v for _, v in route.weighted if v.instances] or route.ready_versions()
    if route.pool:
        # A pool model's instances are the pool's: they serve its versions under their keys and check the
        # pool's token, so a direct call (the model's name and token) would be refused there. None listed.
        versions = []
    items = []
    for version in versions:
        share = (version.weight or 100) * 100 // len(version.instances)
        items += [{"ip": i.host, "port": i.port, "weight": max(share, 1)} for i in version.instances]
    # "generation" is Ferry's: which route entry this is (EAS clients read only "endpoints").
    body = {"endpoints": {"items": items}, "generation": route.generation}
    return 200, [JSON], json.dumps(body).encode()
