"""What a request path asks for, without reading the body: the service (or model) name and the upstream path.

| path                                          | service                  | sent to the instance as            |
|-----------------------------------------------|--------------------------|------------------------------------|
| /api/predict/<svc>[/<rest>]                    | <svc> (or a group)       | unchanged (strip_prefix: /<rest>)  |
| /v1/models/<m>:<verb>, /v1/models/<m>          | <m>                      | unchanged                          |
| /v2/models/<m>[/versions/<n>][/ready|/infer]   | <m>, pinned to version n | /v2/models/<m>[/ready|/infer]      |
| /v2/health/{live,ready}, /v2 with `model: <m>` | <m>                      | unchanged                          |

Ferry's built-in model server serves each model under its service's name, so the model named in a V1/V2 path
is the service. The upstream path is rebuilt from the service name, so a mirrored copy or a group member gets
a path naming itself.
"""

from __future__ import annotations

EAS_PREFIX = "/api/predict/"
V1_PREFIX = "/v1/models/"
V2_PREFIX = "/v2/models/"
DISCOVERY_PREFIX = "/api/v1/servicediscovery/upstreams/"
MODEL_HEADER_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/v2"})


class Target:
    """`prefix + service + suffix` is the upstream path (without the query string)."""

    __slots__ = ("name", "pinned", "prefix", "suffix", "eas", "rest", "upstream", "signed")

    def __init__(self, name: str, prefix: str, suffix: str, pinned: int | None = None, eas: bool = False,
                 rest: str = "", path: str = ""):
        self.name = name
        self.prefix = prefix
        self.suffix = suffix
        self.pinned = pinned
        self.eas = eas
        self.rest = rest
        self.upstream = prefix if prefix in MODEL_HEADER_PATHS else prefix + name + suffix
        # What an EAS signature may name: the SDK signs /api/predict/<svc> whatever the path.
        resource = EAS_PREFIX + name
        self.signed = (resource,) if path in ("", resource) else (resource, path)

    def upstream_path(self, service: str, strip_prefix: bool = False) -> str:
        if self.eas and strip_prefix:
            return self.rest or "/"
        if service == self.name or self.prefix in MODEL_HEADER_PATHS:
            return self.upstream
        return self.prefix + service + self.suffix


class BadPath(Exception):
    pass


_cache: dict[str, Target | None] = {}


def parse(path: str, model_header: str | None) -> Target | None:
    """The target of a proxied path; None when the path is not one the gateway proxies. Targets are immutable
    and cached by path (clients call the same few paths over and over)."""
    target = _cache.get(path)
    if target is not None:
        return target
    if path in MODEL_HEADER_PATHS:
        return Target(model_header, path, "", path=path) if model_header else None
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
        return Target(name, EAS_PREFIX, slash + rest, eas=True, rest=slash + rest, path=path)
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
