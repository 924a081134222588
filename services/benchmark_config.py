"""A benchmark task's configuration, EAS's JSON (eas-benchmark's `bench_desc_json`), read into a plan. Pure: no
Django, no I/O; the bounds come in as arguments so that a write passes the settings and a test passes its own.

The fields Ferry honours (anything else is refused naming it, so a setting that would be silently ignored never
is):

    service.serviceName   the target, a service of the same project and cluster (required)
    service.requestToken  checked against the service's token (another is refused by name: Ferry always sends the
                          service's own) and not stored
    service.clusterId     Ferry's: the target's cluster, needed only when its name is used in several
    base.mode             "manual" only (EAS's "auto" and "scan" search for a limit; Ferry runs what you ask)
    base.duration         seconds, 1 .. max_seconds (default 60, capped at max_seconds)
    base.qps              requests per second, open loop (absent: closed loop at base.concurrency)
    base.concurrency      requests in flight at most, 1 .. max_concurrency (default min(8, max))
    data.content          the request body, base64 (EAS's way)
    data.json             Ferry's: the request body as a JSON value (absent both: `{}`)
    http.method           POST (default), PUT or GET
    http.path             what follows /api/predict/<service> (e.g. "/v1/models/x:predict"), "" by default
    http.headers          extra request headers (not Authorization or Host)
    optional.maxRt        a request's timeout in milliseconds, 1 .. 60000 (default 5000)
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

KNOWN = {
    "service": {"serviceName", "requestToken", "clusterId"},
    "base": {"mode", "duration", "qps", "concurrency"},
    "data": {"content", "json"},
    "http": {"method", "path", "headers"},
    "optional": {"maxRt"},
}
METHODS = ("POST", "PUT", "GET")
REFUSED_HEADERS = {"authorization", "host", "content-length", "transfer-encoding", "connection"}
MAX_RT_MS = 60_000


@dataclass(frozen=True)
class Bounds:
    max_qps: int
    max_seconds: int
    max_concurrency: int


@dataclass(frozen=True)
class Plan:
    service_name: str
    duration: int
    qps: int | None  # None: closed loop, `concurrency` requests back to back
    concurrency: int
    body: bytes
    method: str = "POST"
    path: str = ""
    headers: dict = field(default_factory=dict)
    timeout_ms: int = 5000


class ConfigError(ValueError):
    """Every problem of a configuration at once, as (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems


def parse(text: str | dict) -> dict:
    """The configuration as a dict (the SDK sends it as a JSON string)."""
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text or "")
    except ValueError as exc:
        raise ConfigError([("body", f"is not JSON: {exc}")]) from exc
    if not isinstance(value, dict):
        raise ConfigError([("body", "must be a JSON object")])
    return value


def plan_of(config: dict, bounds: Bounds) -> Plan:
    """The plan a configuration asks for, or ConfigError naming every field out of bounds or unknown."""
    problems: list[tuple[str, str]] = []
    sections = {}
    for key, value in config.items():
        if key not in KNOWN:
            problems.append((key, "is not a benchmark setting Ferry knows"))
            continue
        if not isinstance(value, dict):
            problems.append((key, "must be an object"))
            continue
        sections[key] = value
        problems += [(f"{key}.{name}", "is not a benchmark setting Ferry knows")
                     for name in value if name not in KNOWN[key]]
    service, base = sections.get("service", {}), sections.get("base", {})
    data, http, optional = sections.get("data", {}), sections.get("http", {}), sections.get("optional", {})

    name = service.get("serviceName")
    if not isinstance(name, str) or not name:
        problems.append(("service.serviceName", "is required: the name of the service to test"))
    if base.get("mode", "manual") != "manual":
        problems.append(("base.mode", 'only "manual" is supported (a fixed rate or concurrency for a duration)'))
    duration = _integer(base, "base.duration", 1, bounds.max_seconds, min(60, bounds.max_seconds), problems,
                        "FERRY_BENCHMARK_MAX_SECONDS")
    qps = _integer(base, "base.qps", 1, bounds.max_qps, None, problems, "FERRY_BENCHMARK_MAX_QPS")
    concurrency = _integer(base, "base.concurrency", 1, bounds.max_concurrency, min(8, bounds.max_concurrency),
                           problems, "FERRY_BENCHMARK_MAX_CONCURRENCY")
    timeout_ms = _integer(optional, "optional.maxRt", 1, MAX_RT_MS, 5000, problems, None)
    body = _body(data, problems)
    method = http.get("method", "POST")
    if method not in METHODS:
        problems.append(("http.method", f"must be one of {', '.join(METHODS)}"))
    path = http.get("path", "")
    if not isinstance(path, str) or (path and not path.startswith("/")) or ".." in path or "#" in path:
        problems.append(("http.path", 'must be empty or a path starting with "/" (no ".." or "#")'))
    headers = http.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        problems.append(("http.headers", "must be an object of strings"))
        headers = {}
    for refused in sorted(k for k in headers if k.lower() in REFUSED_HEADERS):
        problems.append((f"http.headers.{refused}", "is set by Ferry"))
    if problems:
        raise ConfigError(problems)
    return Plan(service_name=name, duration=duration, qps=qps, concurrency=concurrency, body=body, method=method,
                path=path, headers=dict(headers), timeout_ms=timeout_ms)


def stored(config: dict) -> dict:
    """What is kept of a configuration: everything but a request token (the runner uses the service's own)."""
    kept = {key: dict(value) if isinstance(value, dict) else value for key, value in config.items()}
    if isinstance(kept.get("service"), dict):
        kept["service"].pop("requestToken", None)
    return kept


def _integer(section: dict, path: str, low: int, high: int, default, problems: list, setting: str | None):
    name = path.split(".", 1)[1]
    if name not in section:
        return default
    value = section[name]
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append((path, "must be an integer"))
        return default
    if value < low:
        problems.append((path, f"must be at least {low}"))
    elif value > high:
        where = f" (this installation's {setting})" if setting else ""
        problems.append((path, f"must be at most {high}{where}"))
    return value


def _body(data: dict, problems: list) -> bytes:
    if "content" in data and "json" in data:
        problems.append(("data", "give content or json, not both"))
        return b""
    if "content" in data:
        try:
            return base64.b64decode(str(data["content"]), validate=True)
        except (binascii.Error, ValueError):
            problems.append(("data.content", "must be base64"))
            return b""
    if "json" in data:
        return json.dumps(data["json"]).encode()
    return b"{}"
