"""Ferry's rollout operations (EAS has only service groups): describe, canary weight, and the actions."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema

from services import writes
from services.errors import NotFound

from .. import serializers as s
from ..presenters import rollout_body, weights_body
from .base import EasView

TAG = ["Rollouts"]
ACTIONS = {
    "promote": (writes.rollout_promote, "Promoting the new version of"),
    "rollback": (writes.rollout_rollback, "Rolling back"),
    "pause": (writes.rollout_pause, "Paused the rollout of"),
    "resume": (writes.rollout_resume, "Resumed the rollout of"),
    "switch": (writes.rollout_switch, "Switched"),
    "finish": (writes.rollout_finish, "Finished the rollout of"),
}


class RolloutView(EasView):
    @extend_schema(operation_id="DescribeServiceRollout", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        return self.respond(request, {"ServiceName": service.name, "Rollout": rollout_body(service.rollout),
                                      **weights_body(service.versions.all()),
                                      "LastRolledOutVersion": service.last_rolled_out_version})

    @extend_schema(operation_id="UpdateServiceRollout", tags=TAG, request=s.CanaryWeightBody,
                   responses={202: OpenApiTypes.OBJECT}, description="Sets the canary's share of traffic.")
    def put(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        body = self.body(s.CanaryWeightBody, request)
        writes.rollout_set_canary_weight(actor=request.user, service=service, weight=body["CanaryWeight"])
        return self.accepted(request, f"Setting the canary of {service.name} to {body['CanaryWeight']} %")


class RolloutActionView(EasView):
    @extend_schema(operation_id="ActOnServiceRollout", tags=TAG, request=None, responses={202: OpenApiTypes.OBJECT},
                   parameters=[OpenApiParameter("action", str, OpenApiParameter.PATH, enum=list(ACTIONS))],
                   description="promote (new version to 100 % as it is ready), rollback (to the last rolled-out "
                               "version), pause / resume (rolling, canary), switch / finish (blue-green).")
    def put(self, request, cluster_id, service_name, action):
        service = self.service(request, cluster_id, service_name, write=True)
        if action not in ACTIONS:
            raise NotFound(f"No rollout action {action!r}; use one of {', '.join(ACTIONS)}.", code="UnknownAction")
        write, verb = ACTIONS[action]
        write(actor=request.user, service=service)
        return self.accepted(request, f"{verb} {service.name}")
