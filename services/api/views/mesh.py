"""Ferry's own DescribeServicePlacements (not in EAS): where the model mesh has loaded the models of a pool, or
the copies of one model in a pool (docs/mesh.md, "Seeing the placement")."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from services.selectors.mesh import Placement, placements_of

from ..presenters import eas_time
from .base import EasView


def placements_body(placement: Placement) -> dict:
    return {
        "Pool": placement.pool,
        "Placements": [{"Model": copy.model, "Version": copy.version, "Key": copy.key, "Instance": copy.instance,
                        "State": copy.state, "MemoryBytes": copy.memory_bytes, "Requests": copy.requests,
                        "Reason": copy.reason, "LoadedAt": eas_time(copy.loaded_at),
                        "LastUsedAt": eas_time(copy.last_used_at)} for copy in placement.copies],
        "Instances": [{"Name": instance.name, "Ready": instance.ready,
                       "ModelMemoryBytes": instance.model_memory_bytes, "Models": instance.models}
                      for instance in placement.instances],
    }


class PlacementsView(EasView):
    @extend_schema(operation_id="DescribeServicePlacements", tags=["Model mesh"], responses={200: OpenApiTypes.OBJECT},
                   description="Ferry only. For a pool (metadata.type ModelPool): every copy of every model it "
                               "has loaded or is loading (Model, Version, Key, Instance, State Loading / Loaded / "
                               "Failed, MemoryBytes, Requests, Reason: why the placer put it there, LoadedAt, "
                               "LastUsedAt) and its Instances with the memory their copies take and their keys. "
                               "For a model in a pool: its own copies and its Pool; Instances is empty. Any other "
                               "service answers 400 NotInModelMesh. Viewers may read it.")
    def get(self, request, cluster_id, service_name):
        return self.respond(request, placements_body(placements_of(self.service(request, cluster_id, service_name))))
