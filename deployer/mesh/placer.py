"""The placer: makes a pool's instances hold the models its traffic needs (docs/mesh.md).

One pass (`place_pool`) per pool, under a per-pool lock: observe what each ready instance has loaded (its
`GET /ferry/pool`), make the ModelPlacement rows say exactly that (an instance that restarted has lost its
models; one that does not answer is left out), read each model's demand (the gateway's per-second metrics), ask
the pure planner (placement.py) what to load and unload, do it through the instances' V2 model-repository API,
record each decision as an event on the model and on the pool, and republish the routes of the models whose
copies changed, so the gateway sends their requests only where they are loaded.

Passes are asked for by the autoscaler loop (every tick, for every pool), by a request that finds its model
loaded nowhere (the gateway's activator -> `place_for_request`, which waits for the lock rather than skip), and
by a pool model's reconcile when its versions change.
"""

import logging
import time
from contextlib import contextmanager

import requests
from django.conf import settings
from django.db import DatabaseError, IntegrityError
from django.utils import timezone

from contracts.mesh import model_key, parse_model_key
from services.models import Instance, ModelPlacement, PlacementState, Service, Version
from services.selectors import service_token
from services.servicefile.mesh import is_pool
from services.writes import event_record

from ..drivers.base import PermanentError
from ..fetches import FetchPending
from ..metrics import read_seconds
from ..routing import publish_route
from .members import model_source
from .placement import Action, ModelDemand, PoolInstance, plan_placement
from .pool_settings import budget_bytes, load_timeout_seconds, placement_settings, size_estimate
from .servers import server_for

logger = logging.getLogger("ferry.mesh")
RATE_WINDOW_SECONDS = 10
STATES = {"READY": PlacementState.LOADED, "LOADING": PlacementState.LOADING}


def place_pool(pool_id: int, *, waiting: Service | None = None, wait: bool = False) -> list[str]:
    """One pass over one pool; returns what it did, as sentences. `waiting`: a model a request waits for."""
    with _pool_lock(pool_id, wait=wait) as held:
        if not held:
            return []
        pool = Service.objects.select_related("cluster").filter(pk=pool_id, deletion_requested_at__isnull=True).first()
        if pool is None or not is_pool(pool.spec):
            return []
        return _pass(pool, waiting)


def place_for_request(service: Service) -> bool:
    """A request waits for `service` (a pool model loaded nowhere): place it now. True when a pass ran."""
    from .members import pool_of

    pool = pool_of(service)
    if pool is None:
        return False
    if _loaded_on_ready_instance(service):
        # A burst of first requests asks once per request: a pass that already loaded it answered them all, or
        # the gateway has not read the route yet. Publish again instead of planning again.
        publish_route(service.pk)
        return True
    place_pool(pool.pk, waiting=service, wait=True)
    return True


def _loaded_on_ready_instance(service: Service) -> bool:
    serving = service.versions.filter(weight__gt=0).values_list("pk", flat=True)
    return not ModelPlacement.objects.filter(version__in=list(serving), state=PlacementState.LOADED,
                                             instance__ready=True).values("version").distinct().count() < len(serving)


def _pass(pool: Service, waiting: Service | None) -> list[str]:
    server = server_for(pool, service_token(pool))
    instances = list(pool.instances.filter(ready=True, port__isnull=False).order_by("name"))
    reports = {i.pk: _observe(server, i) for i in instances}
    instances = [i for i in instances if reports[i.pk] is not None]
    versions = _served_versions(pool)
    changed = _sync_rows(pool, instances, reports, versions)
    now = time.time()
    demands = _demands(pool, versions, waiting, now)
    plan = plan_placement([_pool_instance(pool, i, reports[i.pk], demands) for i in instances],
                          list(demands.values()), placement_settings(pool.spec), now)
    by_name = {i.name: i for i in instances}
    done = []
    for action in sorted(plan, key=lambda a: a.kind != "unload"):  # unloads first: they make the room
        sentence = _act(pool, action, by_name.get(action.instance), versions, server, changed)
        if sentence:
            done.append(sentence)
    for service_id in changed:
        publish_route(service_id)
    return done


def _observe(server, instance: Instance) -> dict | None:
    try:
        return server.observe(_base(instance))
    except (requests.RequestException, ValueError) as error:
        logger.info("Pool instance %s did not report its models: %s", instance.name, error)
        return None


def _served_versions(pool: Service) -> dict[str, Version]:
    """key -> version, for the versions of the pool's models that take traffic (a canary too)."""
    versions = (Version.objects.select_related("service", "service__cluster")
                .filter(service__project_id=pool.project_id, service__cluster_id=pool.cluster_id,
                        service__spec__metadata__pool=pool.name, service__deletion_requested_at__isnull=True,
                        service__desired_state="running", weight__gt=0))
    return {model_key(v.service.name, v.number): v for v in versions}


def _sync_rows(pool: Service, instances: list[Instance], reports: dict, versions: dict[str, Version]) -> set[int]:
    """Makes the rows say what the instances report. Returns the ids of the model services whose copies changed."""
    changed: set[int] = set()
    rows = {(r.instance_id, r.key): r for r in ModelPlacement.objects.filter(pool=pool).select_related("version")}
    now = timezone.now()
    for instance in instances:
        for model in reports[instance.pk].get("models", []):
            key = model.get("name", "")
            row = rows.pop((instance.pk, key), None)
            version = row.version if row is not None else _version_of(pool, key, versions)
            if version is None:
                continue  # not a model of this pool (any more): the plan unloads it
            state = STATES.get(model.get("state"), PlacementState.FAILED)
            if row is None:
                row = ModelPlacement(pool=pool, instance=instance, version=version, key=key, reason="found loaded",
                                     loaded_at=now)
            if row.state != state:
                changed.add(version.service_id)
            if int(model.get("requests") or 0) > row.requests:
                row.last_used_at = now
            row.state, row.memory_bytes, row.requests = state, int(model.get("memory_bytes") or 0), \
                int(model.get("requests") or 0)
            try:
                row.save()
            except (IntegrityError, DatabaseError):  # its model was deleted meanwhile: the plan unloads it
                continue
    for row in rows.values():  # the instance restarted, went away or stopped answering: the copy is gone
        changed.add(row.version.service_id)
        row.delete()
    return changed


def _version_of(pool: Service, key: str, versions: dict[str, Version]) -> Version | None:
    if key in versions:
        return versions[key]
    parsed = parse_model_key(key)
    if parsed is None:
        return None
    return (Version.objects.filter(service__project_id=pool.project_id, service__cluster_id=pool.cluster_id,
                                   service__name=parsed[0], service__spec__metadata__pool=pool.name,
                                   number=parsed[1]).first())


def _pool_instance(pool: Service, instance: Instance, report: dict, demands: dict[str, ModelDemand]) -> PoolInstance:
    # A copy still loading has no measured size yet: it counts as its estimate, so the plan does not fill its room.
    # A failed load holds nothing and may be tried again.
    loaded = {m["name"]: int(m.get("memory_bytes") or 0) or (demands[m["name"]].size_bytes if m["name"] in demands
                                                                else 0)
              for m in report.get("models", []) if m.get("name") and m.get("state") in STATES}
    return PoolInstance(name=instance.name, ready=True, loaded=loaded,
                        budget_bytes=budget_bytes(pool.spec, int(report.get("baseline_bytes") or 0)))


def _demands(pool: Service, versions: dict[str, Version], waiting: Service | None, now: float) -> dict[str, ModelDemand]:
    rates = _rates(pool, versions, now)
    last_used = {}
    for row in ModelPlacement.objects.filter(pool=pool, last_used_at__isnull=False):
        last_used[row.key] = max(last_used.get(row.key, 0.0), row.last_used_at.timestamp())
    demands = {}
    for key, version in versions.items():
        rate, queued, last_second = rates.get(key, (0.0, False, 0))
        used = max(float(last_second), last_used.get(key, 0.0))
        wanted = queued or (waiting is not None and version.service_id == waiting.pk)
        demands[key] = ModelDemand(key=key, size_bytes=size_estimate(version), rate=rate, last_used=used,
                                   waiting=wanted)
    return demands


def _rates(pool: Service, versions: dict[str, Version], now: float) -> dict[str, tuple[float, bool, int]]:
    """key -> (requests per second over the last seconds, whether requests wait in the gateway now, the last
    second with a request: what "least recently used" goes by, for engines that count no requests per model)."""
    if not settings.REDIS_URL or not versions:
        return {}
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    seconds = [int(now) - offset for offset in range(1, RATE_WINDOW_SECONDS + 1)]
    rates = {}
    try:
        for key, version in versions.items():
            totals = read_seconds(client, pool.cluster.name, version.service.name, [version.number], seconds)
            requests_seen = sum(second.requests for second in totals.values())
            queued = any(totals[s].queue > 0 for s in seconds[:2])
            last_second = max((s for s in seconds if totals[s].requests > 0), default=0)
            rates[key] = (requests_seen / RATE_WINDOW_SECONDS, queued, last_second)
    except Exception as error:  # noqa: BLE001 -- without metrics the pass still serves waiting models
        logger.warning("Could not read the pool models' traffic: %s", error)
    return rates


def _act(pool: Service, action: Action, instance: Instance | None, versions: dict[str, Version], server,
         changed: set[int]) -> str:
    version = versions.get(action.model)
    if action.kind == "unplaceable":
        return _unplaceable(pool, version, action)
    if instance is None:
        return ""
    if action.kind == "unload":
        return _unload(pool, instance, action, server, changed)
    if version is None:
        return ""
    return _load(pool, instance, version, action, server, changed)


def _unload(pool: Service, instance: Instance, action: Action, server, changed: set[int]) -> str:
    row = ModelPlacement.objects.filter(instance=instance, key=action.model).select_related("version").first()
    service_id = row.version.service_id if row is not None else None
    if row is not None:
        # Out of the route first: no new request goes there while it unloads.
        changed.add(service_id)
        row.delete()
        publish_route(service_id)
    try:
        server.unload(_base(instance), action.model)
    except requests.RequestException as error:
        # The instance may be stopping (its pool is being deleted): the next pass sees what it holds.
        logger.info("Could not unload %s from %s: %s", action.model, instance.name, error)
        return ""
    message = f"Unloaded {action.model} from {instance.name}: {action.reason}"
    # The model itself may be gone (deleted): then only the pool's timeline says so.
    _record(pool, Service.objects.filter(pk=service_id).first() if service_id else None, "UnloadedModel", message,
            instance.name)
    return message


def _load(pool: Service, instance: Instance, version: Version, action: Action, server, changed: set[int]) -> str:
    service = version.service
    try:
        source = model_source(service, version)
    except FetchPending:
        return ""  # the fetch is under way: a later pass loads it (the request waits, bounded)
    except PermanentError as error:
        _record(pool, service, "ModelLoadFailed", f"Could not load {action.model}: {error.message}", instance.name,
                warning=True)
        return ""
    try:
        ModelPlacement.objects.update_or_create(instance=instance, key=action.model, defaults={
            "pool": pool, "version": version, "state": PlacementState.LOADING, "reason": action.reason[:255]})
    except (IntegrityError, DatabaseError):
        return ""  # the model was deleted meanwhile
    parameters = {"served_name": service.name, "version": str(version.number), **source}
    if version.service_file.get("model_entry"):
        parameters["model_entry"] = version.service_file["model_entry"]
    began = time.monotonic()
    try:
        memory = server.load(_base(instance), action.model, parameters, timeout=load_timeout_seconds(pool.spec))
    except requests.RequestException as error:
        ModelPlacement.objects.filter(instance=instance, key=action.model).delete()
        message = f"Could not load {action.model} on {instance.name}: {_problem(error)}"
        _record(pool, service, "ModelLoadFailed", message, instance.name, warning=True)
        return message
    ModelPlacement.objects.filter(instance=instance, key=action.model).update(
        state=PlacementState.LOADED, memory_bytes=memory, loaded_at=timezone.now())
    Version.objects.filter(pk=version.pk).update(model_memory_bytes=memory or None)
    changed.add(service.pk)
    publish_route(service.pk)  # serve it at once: a request may be waiting
    message = (f"Loaded {action.model} on {instance.name} in {time.monotonic() - began:.2f} s "
               f"({memory / 2**20:.1f} MB): {action.reason}")
    _record(pool, service, "LoadedModel", message, instance.name)
    return message


def _unplaceable(pool: Service, version: Version | None, action: Action) -> str:
    message = f"Cannot place {action.model}: {action.reason}"
    service = version.service if version is not None else None
    latest = service.events.order_by("-created_at", "-pk").first() if service is not None else None
    if latest is None or latest.message != message:  # once, not at every pass
        _record(pool, service, "ModelUnplaceable", message, "", warning=True)
    return message


def _record(pool: Service, service: Service | None, reason: str, message: str, instance_name: str,
            warning: bool = False) -> None:
    for target in (service, pool):
        if target is not None:
            event_record(service=target, reason=reason, message=message, instance_name=instance_name,
                         warning=warning)


def _base(instance: Instance) -> str:
    return f"http://{instance.host}:{instance.port}"


def _problem(error: requests.RequestException) -> str:
    return str(error) if isinstance(error, requests.HTTPError) else f"{type(error).__name__}: {error}"


@contextmanager
def _pool_lock(pool_id: int, *, wait: bool):
    """One pass per pool at a time, across processes (the loop's task and a request's may overlap). Without
    Redis (a bare test setting) there is one process: no lock."""
    if not settings.REDIS_URL:
        yield True
        return
    import redis

    lock = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5).lock(
        f"ferry:mesh:place:{pool_id}", timeout=300, blocking_timeout=60 if wait else 0)
    held = lock.acquire(blocking=wait)
    try:
        yield held
    finally:
        if held:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 -- expired: another pass may have taken it since
                pass
