"""ListServiceInstances, DeleteServiceInstances, DescribeServiceEvent, DescribeServiceLog, DescribeServiceEndpoints."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from services import selectors
from services import writes
from services.selectors.logs import service_log_lines

from .. import serializers as s
from ..presenters import event_body, instance_body, predict_url
from .base import EasView, page_body

TAG = ["Observe"]


class InstancesView(EasView):
    @extend_schema(operation_id="ListServiceInstances", tags=TAG, parameters=[s.ListInstancesQuery],
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        query = self.query(s.ListInstancesQuery, request)
        instances = selectors.instances_of(service, name=query["InstanceName"] or query["Filter"],
                                           status=query["InstanceStatus"], ip=query["InstanceIP"])
        page = selectors.paginate(instances, query["PageNumber"], query["PageSize"])
        return self.respond(request, page_body(page, "Instances", [instance_body(i) for i in page.items]))

    @extend_schema(operation_id="DeleteServiceInstances", tags=TAG, parameters=[s.DeleteInstancesQuery],
                   responses={202: OpenApiTypes.OBJECT},
                   description="Deletes the named instances (comma-separated); the deployer replaces them.")
    def delete(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        query = self.query(s.DeleteInstancesQuery, request)
        names = [name.strip() for name in query["InstanceList"].split(",") if name.strip()]
        writes.service_instances_restart(actor=request.user, service=service, instance_names=names)
        return self.accepted(request, f"Restarting {len(names)} instance(s) of service {service.name}")


class EventsView(EasView):
    @extend_schema(operation_id="DescribeServiceEvent", tags=TAG, parameters=[s.EventsQuery],
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        query = self.query(s.EventsQuery, request)
        events = selectors.events_of(service, event_type=query["EventType"], instance_name=query["InstanceName"],
                                     start=query["StartTime"], end=query["EndTime"])
        page = selectors.paginate(events, query["PageNum"], query["PageSize"])
        items = [event_body(event) for event in page.items]
        return self.respond(request, page_body(page, "Events", items, number_key="PageNum"))


class LogsView(EasView):
    @extend_schema(operation_id="DescribeServiceLog", tags=TAG, parameters=[s.LogsQuery],
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        query = self.query(s.LogsQuery, request)
        lines = service_log_lines(service, instance_name=query["InstanceName"], keyword=query["Keyword"],
                                  start=query["StartTime"], end=query["EndTime"])
        page = selectors.paginate(lines, query["PageNum"], query["PageSize"])
        return self.respond(request, page_body(page, "Logs", page.items, number_key="PageNum"))


class EndpointsView(EasView):
    @extend_schema(operation_id="DescribeServiceEndpoints", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        can_write = selectors.role_in(request.user, service.project) in selectors.access.WRITE_ROLES
        endpoint = {
            "EndpointType": "DefaultGateway",
            "BackendId": service.cluster.name,
            "PathType": "api/predict",
            "InternetEndpoints": [predict_url(service.name)],
            "IntranetEndpoints": [predict_url(service.name)],
            "Port": 0,
        }
        return self.respond(request, {"Endpoints": [endpoint],
                                      "AccessToken": selectors.service_token(service) if can_write else ""})
