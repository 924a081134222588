"""The model mesh's rules for writes (docs/mesh.md): a model names a pool of its own project and cluster, takes
the pool's processor, and stays in that pool; a pool keeps its processor and outlives none of its models.

Checked inside the write functions (services/writes/catalog.py, scaling.py), so the API, the console and the
CLI refuse the same things with the same words.
"""

from services.errors import Conflict, InvalidRequest
from services.models import Cluster, Project, Service
from services.servicefile.mesh import is_pool, pool_name


def pool_model_checked(spec: dict, *, project: Project, cluster: Cluster) -> dict:
    """`spec` with the pool's processor filled in; refuses a pool that is not this project's pool here (the
    answer is the same for a service of another project as for none: names of others are not revealed)."""
    name = pool_name(spec)
    if not name:
        return spec
    pool = (Service.objects.filter(project=project, cluster=cluster, name=name, deletion_requested_at__isnull=True)
            .only("spec").first())
    if pool is None:
        raise InvalidRequest.at("metadata.pool", f'there is no pool named "{name}" in this project on cluster '
                                                 f'"{cluster.name}"')
    if not is_pool(pool.spec):
        raise InvalidRequest.at("metadata.pool", f'"{name}" is not a pool (its metadata.type is not "ModelPool")')
    processor = pool.spec.get("processor")
    given = spec.get("processor")
    if given is not None and given != processor:
        raise InvalidRequest.at("processor", f'is "{given}" but pool "{name}" runs "{processor}": a model in a pool '
                                             "is served by the pool's processor (leave processor out)")
    _handler_checked(spec, name, processor)
    return {**spec, "processor": processor}


def _handler_checked(spec: dict, pool: str, processor: str) -> None:
    """In a python pool each model brings its handler (processor_path, processor_entry); elsewhere none may."""
    if processor == "python":
        if not spec.get("processor_entry"):
            raise InvalidRequest.at("processor_entry", f'is required in pool "{pool}" (python): the file of the '
                                                       "model's handler, in processor_path or else model_path")
        return
    for field in ("processor_path", "processor_entry"):
        if spec.get(field) is not None:
            raise InvalidRequest.at(field, f'applies only in a python pool; pool "{pool}" runs "{processor}"')


def mesh_change_checked(service: Service, new_spec: dict) -> None:
    """What an update may not change: the pool a model is in, whether a service is a pool, and the processor
    of a pool that has models (they were made for it)."""
    old = service.spec
    if pool_name(new_spec) != pool_name(old):
        raise InvalidRequest.at("metadata.pool", "cannot be changed: create the model again in the other pool")
    if is_pool(new_spec) != is_pool(old):
        raise InvalidRequest.at("metadata.type", "cannot be changed between a pool and another service")
    if is_pool(old) and new_spec.get("processor") != old.get("processor"):
        models = pool_models(service)
        if models:
            raise InvalidRequest.at("processor", f"cannot be changed while the pool serves {_names(models)}")


def pool_delete_checked(service: Service) -> None:
    if not is_pool(service.spec):
        return
    models = pool_models(service)
    if models:
        raise Conflict(f"Pool {service.name} still serves {_names(models)}: delete them first.", code="PoolInUse")


def pool_model_scale_refused(service: Service) -> None:
    if pool_name(service.spec):
        raise InvalidRequest.at("metadata.instance", f"{service.name} is a model in pool {pool_name(service.spec)}: "
                                                     "it has no instances of its own; scale the pool")


def pool_models(pool: Service) -> list[str]:
    """The names of the models in `pool` that are not being deleted."""
    return list(Service.objects.filter(project_id=pool.project_id, cluster_id=pool.cluster_id,
                                       spec__metadata__pool=pool.name, deletion_requested_at__isnull=True)
                .order_by("name").values_list("name", flat=True))


def _names(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
