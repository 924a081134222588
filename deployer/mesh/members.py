"""A pool model's side of a reconcile (docs/mesh.md): it has no process of its own, so "ready" means that a
version can be served by its pool: the pool has a ready instance and (on the local cluster) the version's model
files are in the cache, where every pool instance can read them. Loading it somewhere is the placer's work
(placer.py), on the first request or as demand grows.
"""

from collections import Counter
from pathlib import Path
from dataclasses import dataclass

from services.models import ModelPlacement, Phase, PlacementState, Service, Version
from services.models.clusters import ClusterKind
from services.servicefile.mesh import pool_name

from ..drivers.base import PermanentError
from ..fetches import FetchPending, fetched_dir
from ..status import Status


@dataclass(frozen=True)
class ModelState:
    ready: Counter  # version number -> 1 for each version that can be served now (the rollout planner's input)
    status: Status
    model_dirs: dict  # version number -> the directory the pool loads it from (local cluster)


def pool_of(service: Service) -> Service | None:
    """The pool serving `service` (same project and cluster, not being deleted), or None."""
    name = pool_name(service.spec)
    if not name:
        return None
    return Service.objects.filter(project_id=service.project_id, cluster_id=service.cluster_id, name=name,
                                  deletion_requested_at__isnull=True).first()


def model_source(service: Service, version: Version) -> dict[str, str]:
    """Where the pool loads `version` from, as the load's parameters: `model_dir`, the fetched directory on the
    local cluster (raises FetchPending or PermanentError as fetched_dir does), or `model_uri`, the model's URL
    elsewhere (the pool's server fetches it itself); in a python pool `handler` too, the handler file."""
    service_file = version.service_file
    local = service.cluster.kind == ClusterKind.LOCAL
    sources = {}
    if service_file.get("model_path"):
        url = service_file["model_path"]
        sources["model_dir" if local else "model_uri"] = fetched_dir(service, version, url) if local else url
    if service_file.get("processor_entry"):
        code = service_file.get("processor_path")
        code_dir = fetched_dir(service, version, code) if code and local else code or sources.get("model_dir", "")
        sources["handler"] = str(Path(code_dir) / service_file["processor_entry"])
    return sources


def pool_model_state(service: Service) -> ModelState:
    pool = pool_of(service)
    name = pool_name(service.spec)
    if pool is None:
        return _state(Status(Phase.FAILED, False, False, True, "PoolNotFound",
                             f"pool {name} does not exist (or is being deleted)"))
    ready, dirs, fetching, failures = Counter(), {}, [], []
    pool_ready = pool.instances.filter(ready=True).exists()
    for version in service.versions.all():
        try:
            dirs[version.number] = model_source(service, version)
        except FetchPending:
            fetching.append(version.number)
            continue
        except PermanentError as error:
            failures.append(f"version {version.number}: {error.message}")
            continue
        if pool_ready:
            ready[version.number] = 1
    serving = {v.number for v in service.versions.all() if v.weight > 0}
    if failures and not (serving & set(ready)):
        return _state(Status(Phase.FAILED, False, False, True, "ModelFetchFailed", "; ".join(failures)), ready, dirs)
    if not pool_ready:
        return _state(Status(Phase.WAITING, False, True, False, "WaitingForPool",
                             f"pool {pool.name} has no ready instance yet"), ready, dirs)
    if fetching and not (serving & set(ready)):
        return _state(Status(Phase.WAITING, False, True, False, "FetchingModel",
                             f"fetching the model of version(s) {', '.join(map(str, fetching))}"), ready, dirs)
    copies = ModelPlacement.objects.filter(version__service=service, state=PlacementState.LOADED).count()
    where = f"loaded on {copies} instance(s)" if copies else "loaded on its first request"
    return _state(Status(Phase.RUNNING, True, False, False, "ServedByPool", f"served by pool {pool.name}, {where}"),
                  ready, dirs)


def _state(status: Status, ready: Counter | None = None, dirs: dict | None = None) -> ModelState:
    return ModelState(ready=ready or Counter(), status=status, model_dirs=dirs or {})
