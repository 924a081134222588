"""The gateway's routing table: what the control plane pushes to Redis so the data plane never asks the ORM.

Contract (also in docs/gateway.md):
- Redis hash `ferry:routes`: field = service name, value = JSON of `route_entry(service)`.
- After each change, the service name is published on channel `ferry:routes:changed` (the gateway reloads
  that one field; a message "*" means reload everything). A removed service is deleted from the hash first.
- The gateway loads the whole hash at start and on reconnect, and keeps it in memory.
- `ferry:routes:complete` holds the run id of the Redis server that last got the whole table at once. A Redis
  that restarted has another run id: until the sweep republishes everything (`republish_if_lost`), the gateway
  keeps its in-memory table rather than trust a hash that lost entries or came back from an old dump.
"""

import json
import logging

from django.conf import settings

from services.models import Service
from services.selectors.traffic_refs import published_group, published_mirror

from .scale import activation_failed

logger = logging.getLogger("ferry.routing")
ROUTES_KEY = "ferry:routes"
CHANGED_CHANNEL = "ferry:routes:changed"
COMPLETE_KEY = "ferry:routes:complete"


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
        # Targets and group as checked now, by identity within the project and cluster
        # (services/selectors/traffic_refs.py): a deleted target, a foreign group are not published.
        "mirror": published_mirror(service),
        "group": published_group(service),
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


def republish_if_lost() -> bool:
    """Writes the whole table when Redis restarted since the last complete publish (its run id changed): a
    Redis without persistence lost every entry, one restored from a dump holds old ones, and a steady service
    is not reconciled again on its own. Costs one INFO and one GET otherwise. Never raises."""
    if not settings.REDIS_URL:
        return False
    try:
        client = _redis()
        run_id = client.info("server")["run_id"]
        mark = client.get(COMPLETE_KEY)
        if not needs_republish(mark, run_id):
            return False
        count = _republish_all(client, run_id)
    except Exception as exc:  # noqa: BLE001 -- Redis may still be away: the next sweep tries again
        logger.warning("Could not check or republish the routing table: %s", exc)
        return False
    logger.info("Republished the routes of %d services to a restarted Redis", count)
    return True


def needs_republish(mark: bytes | str | None, run_id: str) -> bool:
    return (mark.decode() if isinstance(mark, bytes) else mark) != run_id


def _republish_all(client, run_id: str) -> int:
    from services.selectors import service_token

    services = (Service.objects.select_related("cluster").prefetch_related("versions", "instances")
                .filter(cluster__kind="local", deletion_requested_at__isnull=True))
    entries = {s.name: json.dumps(route_entry(s, service_token(s))) for s in services}
    # One transaction: the gateway sees either the old hash or the whole new one with its mark, never a part.
    pipe = client.pipeline(transaction=True)
    pipe.delete(ROUTES_KEY)
    if entries:
        pipe.hset(ROUTES_KEY, mapping=entries)
    pipe.set(COMPLETE_KEY, run_id)
    pipe.publish(CHANGED_CHANNEL, "*")
    pipe.execute()
    return len(entries)


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
