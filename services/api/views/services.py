"""CreateService, ListServices, DescribeService, UpdateService, DeleteService, Start/Stop/RestartService."""

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from services import selectors
from services import writes
from services.models import Instance, Version
from services.selectors.masking import sees_secrets_of

from .. import serializers as s
from ..presenters import predict_url, service_body
from .base import EasView, page_body

TAG = ["Services"]


class ServicesView(EasView):
    @extend_schema(operation_id="ListServices", tags=TAG, parameters=[s.ListServicesQuery],
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        query = self.query(s.ListServicesQuery, request)
        services = selectors.services_list(
            request.user, name_contains=query["Filter"], name=query["ServiceName"], group=query["GroupName"],
            status=query["ServiceStatus"], cluster=query["ResourceName"], project=query["WorkspaceId"],
            sort=query["Sort"], order=query["Order"], labels=query.get("Label"),
        ).select_related("created_by").prefetch_related(
            Prefetch("versions",
                     queryset=Version.objects.only("id", "service_id", "number", "weight", "requested_weight")),
            Prefetch("instances", queryset=Instance.objects.only("id", "service_id", "ready")),
        )
        page = selectors.paginate(services, query["PageNumber"], query["PageSize"])
        sees_secrets = sees_secrets_of(request.user)
        items = [service_body(svc, with_secrets=sees_secrets(svc.project_id)) for svc in page.items]
        return self.respond(request, page_body(page, "Services", items))

    @extend_schema(operation_id="CreateService", tags=TAG, parameters=[s.CreateServiceQuery],
                   request=OpenApiTypes.OBJECT, responses={202: OpenApiTypes.OBJECT},
                   description="The body is a service file in either EAS style; see docs/service-files.md.")
    def post(self, request):
        query = self.query(s.CreateServiceQuery, request)
        project = selectors.project_for_write(request.user, query["WorkspaceId"])
        service = writes.service_create(
            actor=request.user, project=project, document=request.data, labels=query.get("Labels")
        )
        body = {
            "ServiceId": service.uid,
            "ServiceName": service.name,
            "Status": service.phase,
            "Region": service.cluster.name,
            "InternetEndpoint": predict_url(service.name),
            "IntranetEndpoint": predict_url(service.name),
        }
        return self.respond(request, body, status=202)


class ServiceView(EasView):
    @extend_schema(operation_id="DescribeService", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        can_write = selectors.role_in(request.user, service.project) in selectors.access.WRITE_ROLES
        return self.respond(request, service_body(service, with_token=can_write, with_secrets=can_write))

    @extend_schema(operation_id="UpdateService", tags=TAG, parameters=[s.UpdateServiceQuery],
                   request=OpenApiTypes.OBJECT, responses={202: OpenApiTypes.OBJECT},
                   description='A partial service file such as {"metadata": {"instance": 3}} (UpdateType=merge, '
                               "the default) or a whole one (UpdateType=replace). A change to what shapes an "
                               "instance creates a new version.")
    def put(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        query = self.query(s.UpdateServiceQuery, request)
        writes.service_update(actor=request.user, service=service, patch=request.data,
                              update_type=query["UpdateType"], strategy=query["Strategy"],
                              canary_weight=query["CanaryWeight"])
        return self.accepted(request, f"Updating service {service.name}")

    @extend_schema(operation_id="DeleteService", tags=TAG, responses={202: OpenApiTypes.OBJECT})
    def delete(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        writes.service_delete(actor=request.user, service=service)
        return self.accepted(request, f"Deleting service {service.name}")


def lifecycle_view(operation: str, write, verb: str):
    """StartService, StopService and RestartService differ only in the write they call."""

    class LifecycleView(EasView):
        @extend_schema(operation_id=operation, tags=TAG, request=None, responses={202: OpenApiTypes.OBJECT})
        def put(self, request, cluster_id, service_name):
            service = self.service(request, cluster_id, service_name, write=True)
            write(actor=request.user, service=service)
            return self.accepted(request, f"{verb} service {service.name}")

    LifecycleView.__name__ = f"{operation}View"
    return LifecycleView


StartServiceView = lifecycle_view("StartService", writes.service_start, "Starting")
StopServiceView = lifecycle_view("StopService", writes.service_stop, "Stopping")
RestartServiceView = lifecycle_view("RestartService", writes.service_restart, "Restarting")
