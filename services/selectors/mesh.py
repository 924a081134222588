"""Where the model mesh has placed its models (docs/mesh.md, "Seeing the placement"), as plain data for the API,
the console and the CLI.

A pool shows every copy of every model it serves and each of its instances with the memory its copies take; a
model in a pool shows its own copies and its pool's name. The rows are the placer's (`ModelPlacement`); this
module only reads them, in a fixed number of queries whatever their count.
"""

from dataclasses import dataclass
from datetime import datetime

from services.errors import InvalidRequest
from services.models import Event, Instance, ModelPlacement, PlacementState, Service
from services.servicefile.mesh import is_pool, pool_name

# The placer's decisions, as recorded on both the model and the pool.
MESH_REASONS = ("LoadedModel", "UnloadedModel", "ModelLoadFailed", "ModelUnplaceable")
# A failed copy holds no memory and serves nothing: it is listed (with why) but not counted on its instance.
HOLDING = (PlacementState.LOADING, PlacementState.LOADED)


@dataclass(frozen=True)
class Copy:
    """One copy of a model version on one instance of its pool."""

    model: str
    version: int
    key: str
    instance: str
    state: str
    memory_bytes: int
    requests: int
    reason: str
    loaded_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class PoolInstance:
    name: str
    ready: bool
    model_memory_bytes: int  # what its loading and loaded copies take
    models: list[str]  # the keys of those copies


@dataclass(frozen=True)
class Placement:
    pool: str
    is_pool: bool
    copies: list[Copy]
    instances: list[PoolInstance]  # the pool's; empty for a model in a pool


def in_mesh(service: Service) -> bool:
    return is_pool(service.spec) or bool(pool_name(service.spec))


def placements_of(service: Service) -> Placement:
    """The placement seen from `service`, a pool or a model in one; any other service is refused by name."""
    if is_pool(service.spec):
        rows = ModelPlacement.objects.filter(pool=service)
        copies = [_copy(row) for row in rows.select_related("instance", "version__service")]
        instances = [_pool_instance(instance, copies)
                     for instance in Instance.objects.filter(service=service).order_by("name")]
        return Placement(pool=service.name, is_pool=True, copies=copies, instances=instances)
    name = pool_name(service.spec)
    if not name:
        raise InvalidRequest(f"{service.name} is not in the model mesh: it is neither a pool (metadata.type "
                             '"ModelPool") nor a model in one (metadata.pool), so nothing places it.',
                             code="NotInModelMesh")
    rows = ModelPlacement.objects.filter(version__service=service).select_related("instance", "version__service")
    return Placement(pool=name, is_pool=False, copies=[_copy(row) for row in rows], instances=[])


def mesh_events(service: Service, limit: int = 8) -> list[Event]:
    """The placer's most recent decisions about `service` (a pool's are about all its models)."""
    return list(Event.objects.filter(service=service, reason__in=MESH_REASONS).order_by("-created_at", "-id")[:limit])


def _copy(row: ModelPlacement) -> Copy:
    return Copy(model=row.version.service.name, version=row.version.number, key=row.key, instance=row.instance.name,
                state=row.state, memory_bytes=row.memory_bytes, requests=row.requests, reason=row.reason,
                loaded_at=row.loaded_at, last_used_at=row.last_used_at)


def _pool_instance(instance: Instance, copies: list[Copy]) -> PoolInstance:
    held = [copy for copy in copies if copy.instance == instance.name and copy.state in HOLDING]
    return PoolInstance(name=instance.name, ready=instance.ready,
                        model_memory_bytes=sum(copy.memory_bytes for copy in held),
                        models=[copy.key for copy in held])
