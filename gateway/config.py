"""The gateway's settings, all from the environment (documented in docs/gateway.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from contracts.auth import DEFAULT_MAX_SKEW, DEFAULT_MEMORY

MIB = 1024 * 1024


def _float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise SystemExit(f"ferry-gateway: {name} must be a number, not {value!r}") from None


def _positive_int(name: str, default: int) -> int:
    value = _float(name, default)
    if value < 1 or value != int(value):
        raise SystemExit(f"ferry-gateway: {name} must be a whole number of at least 1, not {value:g}")
    return int(value)


def _cluster() -> str:
    value = os.environ.get("FERRY_GATEWAY_CLUSTER", "").strip() or "local"
    if not all(c.isalnum() or c in "-_" for c in value):
        raise SystemExit(f"ferry-gateway: FERRY_GATEWAY_CLUSTER must be a cluster name (letters, digits, - and _), "
                         f"not {value!r}")
    return value


def _switch(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"ferry-gateway: {name} must be true or false (1 / 0), not {value!r}")


def _positive(name: str, default: float) -> float:
    value = _float(name, default)
    if not value > 0:
        raise SystemExit(f"ferry-gateway: {name} must be a number of seconds above 0, not {value:g}")
    return value


def _listen_fd() -> int | None:
    value = os.environ.get("FERRY_LISTEN_FD", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise SystemExit(f"ferry-gateway: FERRY_LISTEN_FD must be a file descriptor number, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    redis_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    # A listening socket inherited from the supervisor (FERRY_LISTEN_FD), used instead of host and port: it
    # outlives this process, so connections wait in its backlog while a crashed gateway restarts.
    listen_fd: int | None = None
    # How long a request may wait for a service at zero (or still starting) to get a ready instance.
    activation_timeout: float = 60.0
    # EAS signatures: how far the Date header may be from the gateway's clock in some time zone, and how long
    # a signature is accepted after its first use (0: neither is checked).
    signature_max_skew: float = DEFAULT_MAX_SKEW
    # How many signatures the replay memory holds at most (0: none, the time-zone band alone bounds replays).
    signature_memory: int = DEFAULT_MEMORY
    # The Celery queue the activation task is pushed on (the worker's default queue).
    celery_queue: str = "celery"
    # A full reload of the routing table this often, in case a change notification was lost.
    resync_interval: float = 30.0
    # Pooled connections idle longer than this are not reused (uvicorn instances close them after 5 s).
    upstream_max_idle: float = 2.0
    # The cluster whose routes this gateway serves (its hash in Redis: ferry:routes:<cluster>).
    cluster: str = "local"
    # The key that opens the tokens sealed in route entries (contracts/sealing.py); read at start.
    route_key: bytes = b""
    # Limits, each refused with its own status before the request costs more: connections (503), the request
    # line and headers (431), the body (413, refused from Content-Length before it is read).
    max_connections: int = 1024
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_body_bytes: int = 64 * MIB
    # Bearer token /metrics asks for; empty: /metrics is not served (it names every service and its traffic).
    metrics_token: str = ""
    # Seconds a streamed exchange (an answer relayed piece by piece, a request body forwarded as it arrives) may
    # stay silent before it is cut; a stream that keeps moving is never cut, however long.
    stream_idle_timeout: float = 600.0
    # LLM services (route entries with `llm`): route by the engines' load with prefix affinity (gateway/llm_choice.py);
    # off: least outstanding requests, as for every other service (their load is still scraped for Redis).
    llm_routing: bool = True
    # How often each ready instance of an LLM service has its /metrics scraped (gateway/engines.py).
    engine_scrape_interval: float = 0.5
    # Asynchronous services (gateway/dispatcher.py): this gateway's consumer name on the input queues (stable
    # across restarts, so a restarted gateway takes back its pending entries at once; "" : host and port), and
    # how long an entry may stay pending with another consumer (a gateway that died) before this one claims it.
    queue_consumer: str = ""
    queue_claim_idle: float = 60.0

    @classmethod
    def from_env(cls) -> Settings:
        redis_url = os.environ.get("REDIS_URL", "").strip()
        if not redis_url:
            raise SystemExit("ferry-gateway: REDIS_URL is required (the routing table and metrics live in Redis)")
        return cls(
            redis_url=redis_url,
            host=os.environ.get("FERRY_GATEWAY_HOST", "").strip() or "127.0.0.1",
            port=int(_float("FERRY_GATEWAY_PORT", 8080)),
            listen_fd=_listen_fd(),
            activation_timeout=_float("FERRY_GATEWAY_ACTIVATION_TIMEOUT", 60.0),
            signature_max_skew=_float("FERRY_GATEWAY_SIGNATURE_MAX_SKEW", DEFAULT_MAX_SKEW),
            signature_memory=int(_float("FERRY_GATEWAY_SIGNATURE_MEMORY", DEFAULT_MEMORY)),
            celery_queue=os.environ.get("FERRY_GATEWAY_CELERY_QUEUE", "").strip() or "celery",
            resync_interval=_float("FERRY_GATEWAY_RESYNC_INTERVAL", 30.0),
            upstream_max_idle=_float("FERRY_GATEWAY_UPSTREAM_MAX_IDLE", 2.0),
            cluster=_cluster(),
            route_key=_route_key(),
            max_connections=_positive_int("FERRY_GATEWAY_MAX_CONNECTIONS", 1024),
            max_header_bytes=_positive_int("FERRY_GATEWAY_MAX_HEADER_BYTES", 64 * 1024),
            max_headers=_positive_int("FERRY_GATEWAY_MAX_HEADERS", 100),
            max_body_bytes=_positive_int("FERRY_GATEWAY_MAX_BODY_BYTES", 64 * MIB),
            metrics_token=os.environ.get("FERRY_GATEWAY_METRICS_TOKEN", "").strip(),
            stream_idle_timeout=_positive("FERRY_GATEWAY_STREAM_IDLE_TIMEOUT", 600.0),
            llm_routing=_switch("FERRY_GATEWAY_LLM_ROUTING", True),
            engine_scrape_interval=_positive("FERRY_GATEWAY_ENGINE_SCRAPE_INTERVAL", 0.5),
            queue_consumer=os.environ.get("FERRY_GATEWAY_QUEUE_CONSUMER", "").strip(),
            queue_claim_idle=_positive("FERRY_GATEWAY_QUEUE_CLAIM_IDLE", 60.0),
        )


def _route_key() -> bytes:
    from contracts import sealing

    try:
        return sealing.route_key()
    except (ValueError, OSError) as problem:
        raise SystemExit(f"ferry-gateway: no route key: {problem}") from None
