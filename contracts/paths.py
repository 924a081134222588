"""What a request path asks for, without reading the body: the service (or model) name and the upstream path.

| path                                          | service                  | sent to the instance as            |
|-----------------------------------------------|--------------------------|------------------------------------|
| /api/predict/<svc>                             | <svc> (or a group)       | /                                  |
| /api/predict/<svc>/<rest>                      | <svc> (or a group)       | /<rest>                            |
| /v1/models/<m>:<verb>, /v1/models/<m>          | <m>                      | unchanged                          |
| /v2/models/<m>[/versions/<n>][/ready|/infer]   | <m>, pinned to version n | /v2/models/<m>[/ready|/infer]      |
| /v2/health/{live,ready}, /v2 with `model: <m>` | <m>                      | unchanged                          |
| /v1/chat/completions, /v1/completions,         | the body's `model`       | unchanged                          |
| /v1/embeddings (the OpenAI API)                |                          |                                    |

EAS paths lose their `/api/predict/<svc>` prefix as EAS strips it, so a server written for EAS (or Triton, or
an OpenAI-style server behind `/api/predict/<svc>/v1/...`) gets the paths it serves; the query string is kept
by the caller. Ferry's built-in model server serves each model under its service's name, so the model named
in a V1/V2 path is the service; the V1/V2 upstream path is rebuilt from the service name, so a mirrored copy
or a group member gets a path naming itself.

A pool model's version (the model mesh: docs/gateway.md) is served by the pool's instances under its key
(`<service>-v<number>`, the route version's `model`): `upstream_path(service, served_as=key)` names the key
instead, and EAS paths keep their prefix, as the pool's model server serves every loaded key side by side:

| path                                          | sent to the pool's instance as                        |
|-----------------------------------------------|-------------------------------------------------------|
| /api/predict/<svc>[/<rest>]                   | /api/predict/<key>[/<rest>]                           |
| /v1/models/<m>:<verb>, /v1/models/<m>          | /v1/models/<key>:<verb>, /v1/models/<key>            |
| /v2/models/<m>[/versions/<n>][/ready|/infer]   | /v2/models/<key>[/ready|/infer]                      |
| /v2/health/{live,ready}, /v2 with `model: <m>` | unchanged: the server's own health and metadata      |
| the OpenAI API's paths                         | unchanged (the body names the model)                 |

The `model` header's paths ask about the server, not a model (KServe V2: server liveness, readiness and
metadata), and the server a pool model's request reaches is the pool's instance, where the version is
loaded (the route lists only those): so they go unchanged; a client asking about the model itself uses
`/v2/models/<m>[/ready]`, which names the key.

The OpenAI API names the model in the JSON body, not the path: `parse` returns a target without a name
(`by_body`), and once the body is read `openai_target(path, body)` names the service from its `model` (an LLM
service serves its model under the service's name). `GET /v1/models` is answered by the gateway itself (the
services the caller's token opens), so listing models never wakes an engine.
"""

from __future__ import annotations

import json

from .auth import signed_resources

EAS_PREFIX = "/api/predict/"
V1_PREFIX = "/v1/models/"
V2_PREFIX = "/v2/models/"
DISCOVERY_PREFIX = "/api/v1/servicediscovery/upstreams/"
MODEL_HEADER_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/v2"})
OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
OPENAI_MODELS = "/v1/models"


class Target:
    """The upstream path (without the query string): the suffix for EAS paths (`/` when none), else
    `prefix + service + suffix`."""

    __slots__ = ("name", "pinned", "prefix", "suffix", "eas", "path", "upstream", "signed", "by_body")

    def __init__(self, name: str, prefix: str, suffix: str, pinned: int | None = None, eas: bool = False,
                 path: str = "", by_body: bool = False):
        self.name = name
        self.prefix = prefix
        self.suffix = suffix
        self.pinned = pinned
        self.eas = eas
        self.path = path
        self.by_body = by_body  # the service is named in the body (OpenAI): `openai_target` once it is read
        if eas:
            self.upstream = suffix or "/"
        else:
            self.upstream = prefix if prefix in _UNCHANGED else prefix + name + suffix
        self.signed = signed_resources(name, path)

    def upstream_path(self, service: str, served_as: str = "") -> str:
        """The path (without query) sent to an instance of `service`; `served_as`: the name the instance serves
        the chosen version under when it is not the service's (a pool model's key)."""
        if served_as:  # a pool model: first, so that an ordinary service's call pays one test for it
            return self.upstream if self.prefix in _UNCHANGED else self.prefix + served_as + self.suffix
        if service == self.name or self.eas or self.prefix in _UNCHANGED:
            return self.upstream
        return self.prefix + service + self.suffix

    def resources(self, query: bytes) -> tuple[str, ...]:
        """What an EAS signature of this call may name (the query counts when the SDK's service name had one)."""
        return signed_resources(self.name, self.path, query.decode("latin-1")) if query else self.signed


_UNCHANGED = MODEL_HEADER_PATHS | OPENAI_PATHS  # sent to the instance as they came


class BadPath(Exception):
    pass


class BadBody(Exception):
    """An OpenAI request whose body does not name a model the gateway can route by."""


_cache: dict[str, Target | None] = {}


def parse(path: str, model_header: str | None) -> Target | None:
    """The target of a proxied path; None when the path is not one the gateway proxies. Targets are immutable
    and cached by path (clients call the same few paths over and over)."""
    target = _cache.get(path)
    if target is not None:
        return target
    if path in MODEL_HEADER_PATHS:
        return Target(model_header, path, "", path=path) if model_header else None
    if path in OPENAI_PATHS:
        return _BY_BODY[path]
    target = _parse(path)
    if target is not None:
        if len(_cache) >= 4096:  # bounded: a client cycling through many paths only loses the cache
            _cache.clear()
        _cache[path] = target
    return target


def _parse(path: str) -> Target | None:
    if path.startswith(EAS_PREFIX):
        name, slash, rest = path[len(EAS_PREFIX):].partition("/")
        if not name:
            raise BadPath("name the service: /api/predict/<service>")
        return Target(name, EAS_PREFIX, slash + rest, eas=True, path=path)
    if path.startswith(V2_PREFIX):
        return _v2(path[len(V2_PREFIX):], path)
    if path.startswith(V1_PREFIX):
        model, colon, verb = path[len(V1_PREFIX):].partition(":")
        if not model or "/" in model:
            raise BadPath("expected /v1/models/<model>:predict")
        return Target(model, V1_PREFIX, colon + verb, path=path)
    return None


def _v2(tail: str, path: str) -> Target:
    model, _, rest = tail.partition("/")
    if not model:
        raise BadPath("expected /v2/models/<model>[/versions/<n>][/ready|/infer]")
    pinned = None
    if rest.startswith("versions/"):
        number, _, rest = rest[len("versions/"):].partition("/")
        try:
            pinned = int(number)
        except ValueError:
            raise BadPath(f"the version in /v2/models/{model}/versions/<n> must be a number, not {number!r}") from None
    return Target(model, V2_PREFIX, "/" + rest if rest else "", pinned=pinned, path=path)


_BY_BODY = {path: Target("", path, "", path=path, by_body=True) for path in OPENAI_PATHS}


def openai_model(body: bytes) -> str | None:
    """The `model` an OpenAI request body names (None when it names none); BadBody when the body is not a
    JSON object or `model` is not a string."""
    try:
        document = json.loads(body) if body else None
    except ValueError as error:
        raise BadBody(f"the body is not JSON ({error}): the OpenAI API takes a JSON object naming the service "
                      'in "model"') from None
    if not isinstance(document, dict):
        raise BadBody('the body must be a JSON object naming the service in "model"')
    model = document.get("model")
    if model is None:
        return None
    if not isinstance(model, str) or not model:
        raise BadBody('"model" must be the name of a service (a non-empty string)')
    return model


def with_model(body: bytes, model: str) -> bytes:
    """An OpenAI request body (already read as JSON by `openai_model`) with its `model` replaced."""
    document = json.loads(body)
    document["model"] = model
    return json.dumps(document, separators=(",", ":")).encode()


def openai_target(path: str, model: str) -> Target:
    """The target of an OpenAI call once its body named `model`: the service `model`, the path unchanged."""
    return Target(model, path, "", path=path)
