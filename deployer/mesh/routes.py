"""What a pool model's route entry says (docs/mesh.md, contracts/routes.py): its versions' instances are the
pool instances where the placer has loaded them (ModelPlacement rows, Loaded, on a ready instance), each served
under its key; the gateway presents the pool's token to them; a version loaded nowhere makes the gateway hold
the request and ask for it (its activator, as for a service at zero), for up to the pool's load timeout."""

from contracts import sealing
from contracts.mesh import model_key
from contracts.routes import RouteInstance, RouteVersion
from services.models import ModelPlacement, PlacementState, Service
from services.selectors import service_token

from .members import pool_of
from .pool_settings import load_timeout_seconds


def pool_model_fields(service: Service, key: bytes) -> dict:
    """The route entry fields of a pool model that differ from a service's own."""
    pool = pool_of(service)
    loaded: dict[int, list[RouteInstance]] = {}
    placements = (ModelPlacement.objects.filter(version__service=service, state=PlacementState.LOADED,
                                                instance__ready=True, instance__port__isnull=False)
                  .select_related("instance", "version").order_by("instance__name"))
    for row in placements:
        loaded.setdefault(row.version.number, []).append(
            RouteInstance(name=row.instance.name, address=f"{row.instance.host}:{row.instance.port}"))
    versions = tuple(RouteVersion(number=v.number, weight=v.weight, instances=tuple(loaded.get(v.number, ())),
                                  model=model_key(service.name, v.number))
                     for v in sorted(service.versions.all(), key=lambda v: v.number))
    fields = {"versions": versions, "scale_to_zero": True, "pool": pool.name if pool is not None else "",
              "running": service.desired_state == "running" and service.deletion_requested_at is None
              and pool is not None}
    if pool is not None:
        fields |= sealing.upstream_token_fields(key, service_token(pool), service.cluster.name, service.name)
        fields["activation_timeout_ms"] = load_timeout_seconds(pool.spec) * 1000
    return fields
