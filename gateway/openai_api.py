"""The OpenAI API at the gateway: `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings` name their
service only in the body's `model` (contracts/paths.py: a `by_body` target), and `GET /v1/models` lists what
the caller's token opens. The token is the service's own, sent as OpenAI clients send an API key
(`Authorization: Bearer <token>`); the routing table indexes routes by its digest (`RouteTable.by_token`).
"""

from __future__ import annotations

import json

from contracts import auth, paths, sealing

from .local import JSON, UNAUTHORIZED, error


def token_digest(key: bytes, authorization: bytes) -> bytes:
    """The digest of the token an Authorization header presents (`Bearer <token>`, or the bare token as EAS
    clients send it), as route entries keep it."""
    presented = authorization[7:].strip() if authorization[:7].lower() == b"bearer " else authorization.strip()
    return sealing.digest(key, presented) if presented else b""


def precheck(table, authorization: bytes | None):
    """Before the body is read: the token must at least be some service's (401 otherwise, the body unread);
    the gateway checks, with the body, that it is the named service's. None when it passes."""
    refusal = _unusable(authorization)
    if refusal is None and not table.routes_for_token(token_digest(table.key, authorization)):
        refusal = error(401, auth.WRONG_TOKEN, UNAUTHORIZED)
    return refusal


def _unusable(authorization: bytes | None):
    if not authorization:
        return error(401, auth.MISSING, UNAUTHORIZED)
    if authorization[:4] == b"EAS ":
        return error(401, "the OpenAI API takes the service's token as Authorization: Bearer <token>; a signed "
                          "call goes to /api/predict/<service>/v1/...", UNAUTHORIZED)
    return None


def target(table, parsed, body: bytes, authorization: bytes | None):
    """The target the body names (its `model`; when it names none, the one service the token opens), or the
    refusal (status, headers, body). The gateway then checks the token against that service as for any path
    (`precheck` looked it up in the table before the body was read: not again here)."""
    refusal = _unusable(authorization)
    if refusal is not None:
        return refusal
    try:
        model = paths.openai_model(body)
    except paths.BadBody as problem:
        return error(400, str(problem))
    if model is None:
        opened = table.routes_for_token(token_digest(table.key, authorization))
        if len(opened) != 1:
            return error(400, '"model" is missing: name the service to call')
        model = opened[0].name
    return paths.openai_target(parsed.path, model)


def models(table, method: str, authorization: bytes | None):
    """`GET /v1/models`: the services the caller's token opens (its own, and the group it serves in), from the
    table in memory, so listing never wakes an engine scaled to zero."""
    if method not in ("GET", "HEAD"):
        return error(405, "GET /v1/models lists the models; predictions go to /v1/chat/completions, "
                          "/v1/completions or /v1/embeddings", ((b"allow", b"GET, HEAD"),))
    if not authorization:
        return error(401, "give the service's token as Authorization: Bearer <token>")
    names = []
    for route in table.routes_for_token(token_digest(table.key, authorization)):
        names.append(route.name)
        if route.group:
            names.append(route.group)
    if not names:
        return error(401, "the token is not a service's token")
    listed = [{"id": name, "object": "model", "created": 0, "owned_by": "ferry"} for name in dict.fromkeys(names)]
    return 200, [JSON], json.dumps({"object": "list", "data": listed}).encode()


def upstream_body(request, version) -> bytes:
    """The body sent to the instance: an OpenAI request to a pool model's version names the key its engine
    loaded the adapter under (docs/mesh.md, LoRA adapters) instead of the service; any other body as it came."""
    if version.body_model and request.body.__class__ is bytes and _names_model(request.parsed):
        return paths.with_model(request.body, version.body_model)
    return request.body


def _names_model(parsed) -> bool:
    """The OpenAI API's paths, whether called at /v1/... or under /api/predict/<service>/v1/...."""
    return (parsed.prefix if not parsed.eas else parsed.upstream) in paths.OPENAI_PATHS
