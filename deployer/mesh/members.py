"""A pool model's side of a reconcile (docs/mesh.md): it has no process of its own, so "ready" means that a
version can be served by its pool: the pool has a ready instance and (on the local cluster) the version's model
files are in the cache, where every pool instance can read them. Loading it somewhere is the placer's work
(placer.py), on the first request or as demand grows.
"""

from collections import Counter
from pathlib import Path
from dataclasses import dataclass, field

from services.models import ModelPlacement, Phase, PlacementState, Service, Version
from services.models.clusters import ClusterKind
from services.rollouts import rollout_of
from services.servicefile.mesh import pool_name

from ..drivers.base import PermanentError
from ..fetches import FetchPending, fetched_dir
from ..status import Status


@dataclass(frozen=True)
class ModelState:
    ready: Counter  # version number -> 1 for each version that can be served now (the rollout planner's input)
    status: Status | None  # set when nothing else matters (no pool); else model_status decides after the plan
    pool: Service | None = None
    pool_ready: bool = False
    fetching: tuple = ()  # version numbers whose files are being fetched
    failures: dict = field(default_factory=dict)  # version number -> why its files could not be fetched


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
    """What a reconcile needs before it plans: which versions can be served now (`ready`). The versions looked at
    are those that take or are to take traffic (weights asked or applied, a rollout's target): an old version whose
    files failed is not fetched again at every reconcile."""
    pool = pool_of(service)
    name = pool_name(service.spec)
    if pool is None:
        return _state(Status(Phase.FAILED, False, False, True, "PoolNotFound",
                             f"pool {name} does not exist (or is being deleted)"))
    ready, fetching, failures = Counter(), {}, {}
    pool_ready = pool.instances.filter(ready=True).exists()
    for version in _relevant_versions(service):
        try:
            model_source(service, version)  # the files are here (or being fetched, or failed)
        except FetchPending:
            fetching[version.number] = "fetching"
            continue
        except PermanentError as error:
            failures[version.number] = error.message
            continue
        if pool_ready:
            ready[version.number] = 1
    return ModelState(ready=ready, status=None, pool=pool, pool_ready=pool_ready,
                      fetching=tuple(fetching), failures=failures)


def model_status(service: Service, state: ModelState) -> Status:
    """The status once the plan has moved the weights: judged on the versions that take traffic now."""
    if state.status is not None:
        return state.status
    serving = {v.number for v in service.versions.all() if v.weight > 0}
    served = serving & set(state.ready)
    failed = [f"version {n}: {message}" for n, message in state.failures.items() if n in serving or not served]
    if failed and not served:
        return Status(Phase.FAILED, False, False, True, "ModelFetchFailed", "; ".join(failed))
    if not state.pool_ready:
        return Status(Phase.WAITING, False, True, False, "WaitingForPool",
                      f"pool {state.pool.name} has no ready instance yet")
    if state.fetching and not served:
        return Status(Phase.WAITING, False, True, False, "FetchingModel",
                      f"fetching the model of version(s) {', '.join(map(str, state.fetching))}")
    copies = ModelPlacement.objects.filter(version__service=service, state=PlacementState.LOADED).count()
    where = f"loaded on {copies} instance(s)" if copies else "loaded on its first request"
    return Status(Phase.RUNNING, True, False, False, "ServedByPool", f"served by pool {state.pool.name}, {where}")


def _relevant_versions(service: Service) -> list[Version]:
    rollout = rollout_of(service.rollout)
    target = rollout.to_version if rollout is not None else None
    return [v for v in service.versions.all()
            if v.weight > 0 or (v.requested_weight or 0) > 0 or v.number == target]


def _state(status: Status) -> ModelState:
    return ModelState(ready=Counter(), status=status)
