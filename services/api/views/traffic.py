"""ListServiceVersions, UpdateServiceVersion, ReleaseService, ServiceMirror, and Ferry's per-version traffic."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from services import selectors
from services import writes
from services.errors import NotFound
from services.selectors.masking import may_see_secrets

from .. import serializers as s
from ..presenters import version_body, weights_body
from .base import EasView, page_body

TAG = ["Versions and traffic"]


class VersionsView(EasView):
    @extend_schema(operation_id="ListServiceVersions", tags=TAG, parameters=[s.PageQuery],
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        query = self.query(s.PageQuery, request)
        page = selectors.paginate(selectors.versions_of(service), query["PageNumber"], query["PageSize"])
        with_secrets = may_see_secrets(request.user, service.project)
        return self.respond(request, page_body(page, "Versions", [version_body(v, with_secrets=with_secrets)
                                                                  for v in page.items]))


class VersionView(EasView):
    @extend_schema(operation_id="UpdateServiceVersion", tags=TAG, request=s.UpdateServiceVersionBody,
                   responses={202: OpenApiTypes.OBJECT},
                   description="Serves the given version with all traffic (a rollback or roll-forward).")
    def put(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        body = self.body(s.UpdateServiceVersionBody, request)
        writes.version_rollback(actor=request.user, service=service, number=body["Version"])
        return self.accepted(request, f"Switching service {service.name} to version {body['Version']}")


class ReleaseView(EasView):
    @extend_schema(operation_id="ReleaseService", tags=TAG, request=s.ReleaseServiceBody,
                   responses={202: OpenApiTypes.OBJECT},
                   description="Sets this service's weight and traffic state inside its service group.")
    def put(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        body = self.body(s.ReleaseServiceBody, request)
        writes.service_release(actor=request.user, service=service, weight=body.get("Weight"),
                               traffic_state=body.get("TrafficState"))
        return self.accepted(request, f"Released service {service.name}")


class CanaryView(EasView):
    @extend_schema(operation_id="UpdateServiceCanary", tags=TAG, request=s.CanaryBody,
                   responses={202: OpenApiTypes.OBJECT},
                   description='Ferry: sends Weight % to the newest version, e.g. {"Weight": 20}: the canary\'s '
                               "share during a canary rollout, hand-set weights with no rollout; refused (409 "
                               "RolloutInProgress) during a rolling or blue-green rollout.")
    def put(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        percent = self.body(s.CanaryBody, request)["Weight"]
        service = writes.canary_set(actor=request.user, service=service, percent=percent)
        if service.rollout:
            return self.accepted(request, f"Setting the canary of {service.name} to {percent} %")
        shares = sorted(((v.number, v.asked_weight) for v in service.versions.all() if v.asked_weight), reverse=True)
        said = ", version ".join(f"{number} {'gets ' if i == 0 else ''}{weight} %"
                                 for i, (number, weight) in enumerate(shares))
        return self.accepted(request, f"Canary: version {said}.")


class TrafficView(EasView):
    @extend_schema(operation_id="DescribeServiceTraffic", tags=TAG, responses={200: OpenApiTypes.OBJECT},
                   description="Ferry: the share of traffic of each version and the last rolled-out version.")
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        versions = list(selectors.versions_of(service))
        return self.respond(request, {"ServiceName": service.name, **weights_body(versions),
                                      "LastRolledOutVersion": service.last_rolled_out_version})

    @extend_schema(operation_id="UpdateServiceTraffic", tags=TAG, request=s.TrafficBody,
                   responses={202: OpenApiTypes.OBJECT},
                   description='Ferry: sets weights per version, e.g. {"Weights": {"1": 80, "2": 20}}.')
    def put(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        body = self.body(s.TrafficBody, request)
        writes.version_weights_set(actor=request.user, service=service, weights=body["Weights"])
        return self.accepted(request, f"Shifting traffic of service {service.name}")


class MirrorView(EasView):
    @extend_schema(operation_id="DescribeServiceMirror", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        if service.mirror is None:
            raise NotFound(f"Service {service.name} has no mirror.", code="MirrorNotFound")
        return self.respond(request, {"ServiceName": service.name, "Target": ",".join(service.mirror["targets"]),
                                      "Ratio": str(service.mirror["ratio"])})

    @extend_schema(operation_id="CreateServiceMirror", tags=TAG, request=s.MirrorBody,
                   responses={200: OpenApiTypes.OBJECT})
    def post(self, request, cluster_id, service_name):
        return self._set(request, cluster_id, service_name)

    @extend_schema(operation_id="UpdateServiceMirror", tags=TAG, request=s.MirrorBody,
                   responses={200: OpenApiTypes.OBJECT})
    def put(self, request, cluster_id, service_name):
        return self._set(request, cluster_id, service_name)

    @extend_schema(operation_id="DeleteServiceMirror", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def delete(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        writes.mirror_delete(actor=request.user, service=service)
        return self.respond(request, {"Message": f"Removed the mirror of service {service.name}"})

    def _set(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        body = self.body(s.MirrorBody, request)
        writes.mirror_set(actor=request.user, service=service, targets=body["Target"], ratio=body["Ratio"])
        return self.respond(request, {"Message": f"Mirroring {body['Ratio']} % of service {service.name}"})
