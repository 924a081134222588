"""The gateway's routing table: what the control plane pushes to Redis so the data plane never asks the ORM.

Contract (also in docs/gateway.md):
- Redis hash `ferry:routes`: field = service name, value = JSON of `route_entry(service)`.
- After each change, the service name is published on channel `ferry:routes:changed` (the gateway reloads
  that one field; a message "*" means reload everything). A removed service is deleted from the hash first.
- The gateway loads the whole hash at start and on reconnect, and keeps it in memory.
"""

import json
import logging

from django.conf import settings

from services.models import Service

from .scale import activation_failed

logger = logging.getLogger("ferry.routing")
ROUTES_KEY = "ferry:routes"
CHANGED_CHANNEL = "ferry:routes:changed"


def route_entry(service: Service, token: str) -> dict:
    """Everything the gateway needs to serve one service. Pure: reads only the objects given."""
    metadata = service.spec.get("metadata", {})
    rpc = metadata.get("rpc", {})
    instances = list(service.instances.all())
    versions = []
    for version in sorted(service.versions.all(), key=lambda v: v.number):
        endpoints = [{"name": i.name, "address": f"{i.host}:{i.port}"}
                     for i in instances if i.version_id == version.pk and i.ready and i.port]
        versions.append({"number": version.number, "weight": version.weight, "instances": endpoints})
    autoscaler = service.autoscaler or {}
    return {
        "service": service.name,
        "cluster": service.cluster.name,
        "token": token,
        "running": service.desired_state == "running" and service.deletion_requested_at is None,
        "timeout_ms": int(rpc.get("keepalive") or 5000),
        "max_queue_size": int(rpc.get("max_queue_size") or 64),
        "instance_concurrency": int(metadata.get("container_concurrency") or 0),
        "scale_to_zero": autoscaler.get("min") == 0,
        "versions": versions,
        "mirror": service.mirror,
        "group": service.group,
        "group_weight": service.group_weight,
        "traffic_state": service.traffic_state,
        "generation": service.generation,
        "failed": service.activation["message"] if activation_failed(service.activation, service.generation) else "",
    }


def publish_route(service_id: int) -> None:
    """Pushes one service's entry (or its removal). Never raises: routing catches up on the next publish."""
    if not settings.REDIS_URL:
        return
    from services.selectors import service_token

    try:
        client = _redis()
        service = (Service.objects.select_related("cluster").prefetch_related("versions", "instances")
                   .filter(pk=service_id).first())
        if service is None or service.deletion_requested_at is not None:
            name = service.name if service else None
            if name:
                client.hdel(ROUTES_KEY, name)
                client.publish(CHANGED_CHANNEL, name)
            return
        client.hset(ROUTES_KEY, service.name, json.dumps(route_entry(service, service_token(service))))
        client.publish(CHANGED_CHANNEL, service.name)
    except Exception as exc:  # noqa: BLE001 -- a Redis outage must not fail a reconcile
        logger.warning("Could not publish the route of service %s: %s", service_id, exc)


def unpublish_route(name: str) -> None:
    if not settings.REDIS_URL:
        return
    try:
        client = _redis()
        client.hdel(ROUTES_KEY, name)
        client.publish(CHANGED_CHANNEL, name)
    except Exception as exc:  # noqa: BLE001
        logger.warning("Could not remove the route of service %s: %s", name, exc)


def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
