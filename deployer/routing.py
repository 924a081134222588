"""The gateway's routing table: what the control plane pushes to Redis so the data plane never asks the ORM.

Contract (also in docs/gateway.md; the key names in contracts/keys.py, the entry in contracts/routes.py), per
cluster (a gateway serves one cluster: FERRY_GATEWAY_CLUSTER):
- Redis hash `ferry:routes:<cluster>`: field = service name, value = `route_entry(service).to_json()`. Service
  names are unique within a cluster, so a same-named service on another cluster lives in another hash and
  can neither overwrite nor delete this one's route.
- After each change, the service name is published on channel `ferry:routes:<cluster>:changed` (the gateway
  reloads that one field; a message "*" means reload everything). A removed service is deleted first.
- The gateway loads its cluster's whole hash at start and on reconnect, and keeps it in memory.
- `ferry:routes:<cluster>:complete` holds the run id of the Redis server that last got that cluster's whole
  table at once. A Redis that restarted has another run id: until the sweep republishes everything
  (`republish_if_lost`), the gateway keeps its in-memory table rather than trust a hash that lost entries.
- No token in plain text: an entry holds the token's keyed digest and the token sealed with the route key
  (contracts/sealing.py), which only the control plane and the gateway have.
"""

import logging

from django.conf import settings

from contracts import sealing
from contracts.keys import LEGACY_ROUTE_KEYS, changed_channel, complete_key, queue_key, routes_key
from contracts.routes import RouteEntry, RouteInstance, RouteMirror, RouteVersion
from processors.codes import LLM_PROCESSORS
from services.activations import activation_failure
from services.models import Service
from services.selectors.traffic_refs import published_group, published_mirror
from services.models.clusters import Cluster
from services.servicefile.asynchronous import route_queue
from services.servicefile.mesh import pool_name

from .mesh.routes import pool_model_fields

logger = logging.getLogger("ferry.routing")

# The local cluster's keys: what `make run`'s gateway (FERRY_GATEWAY_CLUSTER=local) reads.
ROUTES_KEY, CHANGED_CHANNEL, COMPLETE_KEY = routes_key("local"), changed_channel("local"), complete_key("local")


def route_entry(service: Service, token: str, key: bytes | None = None) -> RouteEntry:
    """Everything the gateway needs to serve one service. Pure: reads only the objects given (and the route
    key, read once per process when not given)."""
    metadata = service.spec.get("metadata", {})
    rpc = metadata.get("rpc", {})
    key = key if key is not None else _route_key()
    autoscaler = service.autoscaler or {}
    cluster = service.cluster.name
    # Targets and group as checked now, by identity within the project and cluster
    # (services/selectors/traffic_refs.py): a deleted target, a foreign group are not published.
    mirror = published_mirror(service)
    fields = dict(
        service=service.name,
        cluster=cluster,
        # Groups are partitioned by project in the gateway: a member of another project never joins this one's.
        project=service.project_id,
        **sealing.token_fields(key, token, cluster, service.name),
        running=service.desired_state == "running" and service.deletion_requested_at is None,
        timeout_ms=int(rpc.get("keepalive") or 5000),
        max_queue_size=int(rpc.get("max_queue_size") or 64),
        instance_concurrency=int(metadata.get("container_concurrency") or 0),
        scale_to_zero=autoscaler.get("min") == 0,
        versions=tuple(_own_versions(service)),
        mirror=RouteMirror(targets=tuple(mirror["targets"]), ratio=mirror["ratio"]) if mirror is not None else None,
        group=published_group(service),
        group_weight=service.group_weight,
        traffic_state=service.traffic_state,
        generation=service.generation,
        failed=activation_failure(service.activation, service.generation),
        llm=is_llm(service),
        activation_timeout_ms=activation_timeout_seconds(service) * 1000,
        queue=route_queue(service.spec),  # an asynchronous service: the gateway serves its queues (docs/async.md)
    )
    if pool_name(service.spec):
        # Served by its pool's instances where the placer loaded it (deployer/mesh/routes.py).
        fields.update(pool_model_fields(service, key))
    return RouteEntry(**fields)


def _own_versions(service: Service) -> list[RouteVersion]:
    instances = list(service.instances.all())
    versions = []
    for version in sorted(service.versions.all(), key=lambda v: v.number):
        endpoints = tuple(RouteInstance(name=i.name, address=f"{i.host}:{i.port}")
                          for i in instances if i.version_id == version.pk and i.ready and i.port)
        # The weight applied by the reconciler, never the one asked: a share moves once the plan has it.
        versions.append(RouteVersion(number=version.number, weight=version.weight, instances=endpoints))
    return versions


def is_llm(service: Service) -> bool:
    """An LLM engine serves it: the gateway routes by the engine's load, with prefix affinity."""
    return service.spec.get("processor") in LLM_PROCESSORS


def activation_timeout_seconds(service: Service) -> int:
    """How long the gateway holds a request while the service wakes from zero; 0: the gateway's own setting
    (FERRY_GATEWAY_ACTIVATION_TIMEOUT). An LLM engine loads its weights and compiles before it serves, which
    takes minutes: FERRY_LLM_ACTIVATION_TIMEOUT_SECONDS."""
    return settings.FERRY_LLM_ACTIVATION_TIMEOUT_SECONDS if is_llm(service) else 0


def publish_route(service_id: int) -> None:
    """Pushes one service's entry (or its removal). Never raises: routing catches up on the next publish."""
    if not settings.REDIS_URL:
        return
    from services.selectors import service_token

    try:
        client = _redis()
        service = (Service.objects.select_related("cluster").prefetch_related("versions", "instances")
                   .filter(pk=service_id).first())
        if service is None:
            return
        cluster = service.cluster.name
        if service.deletion_requested_at is not None:
            client.hdel(routes_key(cluster), service.name)
            client.publish(changed_channel(cluster), service.name)
            return
        client.hset(routes_key(cluster), service.name, route_entry(service, service_token(service)).to_json())
        client.publish(changed_channel(cluster), service.name)
    except Exception as exc:  # noqa: BLE001 -- a Redis outage must not fail a reconcile
        logger.warning("Could not publish the route of service %s: %s", service_id, exc)


def republish_if_lost() -> bool:
    """Writes the whole table of each cluster when Redis restarted since its last complete publish (its
    run id changed): a Redis without persistence lost every entry, one restored from a dump holds old ones,
    and a steady service is not reconciled again on its own. Costs one INFO and one GET per local cluster
    otherwise. Never raises."""
    if not settings.REDIS_URL:
        return False
    try:
        client = _redis()
        run_id = client.info("server")["run_id"]
        # Every cluster: a Kubernetes cluster's own gateway (platform/kubernetes/gateway.yaml) reads its table too.
        clusters = list(Cluster.objects.values_list("name", flat=True))
        lost = [name for name in clusters if needs_republish(client.get(complete_key(name)), run_id)]
        if not lost:
            return False
        count = sum(_republish_cluster(client, run_id, name) for name in lost)
    except Exception as exc:  # noqa: BLE001 -- Redis may still be away: the next sweep tries again
        logger.warning("Could not check or republish the routing table: %s", exc)
        return False
    logger.info("Republished the routes of %d services to a restarted Redis", count)
    return True


def needs_republish(mark: bytes | str | None, run_id: str) -> bool:
    return (mark.decode() if isinstance(mark, bytes) else mark) != run_id


def _republish_cluster(client, run_id: str, cluster: str) -> int:
    from services.selectors import service_token

    key = _route_key()
    services = (Service.objects.select_related("cluster").prefetch_related("versions", "instances")
                .filter(cluster__name=cluster, deletion_requested_at__isnull=True))
    entries = {s.name: route_entry(s, service_token(s), key).to_json() for s in services}
    # One transaction: the gateway sees either the old hash or the whole new one with its mark, never a part.
    pipe = client.pipeline(transaction=True)
    pipe.delete(routes_key(cluster), *LEGACY_ROUTE_KEYS)
    if entries:
        pipe.hset(routes_key(cluster), mapping=entries)
    pipe.set(complete_key(cluster), run_id)
    pipe.publish(changed_channel(cluster), "*")
    pipe.execute()
    return len(entries)


def unpublish_route(name: str, cluster: str) -> None:
    if not settings.REDIS_URL:
        return
    try:
        client = _redis()
        client.hdel(routes_key(cluster), name)
        client.publish(changed_channel(cluster), name)
    except Exception as exc:  # noqa: BLE001
        logger.warning("Could not remove the route of service %s: %s", name, exc)


def delete_queues(name: str, cluster: str) -> None:
    """A deleted service's queues (an asynchronous service's input and sink, docs/async.md) go with it, as on
    EAS: a service created again under the name starts empty, with indexes from 1."""
    if not settings.REDIS_URL:
        return
    try:
        keys = [queue_key(cluster, name), queue_key(cluster, name, sink=True)]
        _redis().delete(*keys, *(f"{key}:seq" for key in keys))
    except Exception as exc:  # noqa: BLE001 -- left behind, they cost memory only; a new service's queue starts
        logger.warning("Could not delete the queues of service %s: %s", name, exc)  # where the old one ended


def _route_key() -> bytes:
    """The key that seals tokens for the gateway (contracts/sealing.py): FERRY_ROUTE_KEY, else var/route-key."""
    return sealing.route_key(settings.VAR_DIR)


def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
