"""The gateway's settings, all from the environment (documented in docs/gateway.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .auth import DEFAULT_MAX_SKEW, DEFAULT_MEMORY


def _float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise SystemExit(f"ferry-gateway: {name} must be a number, not {value!r}") from None


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
        )
