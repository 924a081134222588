"""ListGroups, DescribeGroup, DescribeGroupEndpoints, and the resource-group operations mapped to clusters."""

import os

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from services import selectors
from services.errors import NotFound
from services.selectors.grants import clusters_visible_to
from services.selectors.masking import sees_secrets_of
from services.models import Cluster

from .. import serializers as s
from ..presenters import group_body, predict_url, resource_body, service_body
from .base import EasView, page_body


class GroupsView(EasView):
    @extend_schema(operation_id="ListGroups", tags=["Groups"], parameters=[s.ListGroupsQuery],
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        query = self.query(s.ListGroupsQuery, request)
        rows = selectors.groups_visible_to(request.user, name_contains=query["Filter"], project=query["WorkspaceId"])
        page = selectors.paginate(rows, query["PageNumber"], query["PageSize"])
        return self.respond(request, page_body(page, "Groups", [group_body(row) for row in page.items]))


def _group_row(request, cluster_id: str, group_name: str) -> dict:
    rows = [row for row in selectors.groups_visible_to(request.user)
            if row["cluster__name"] == cluster_id and row["group"] == group_name]
    if not rows:
        raise NotFound(f"Group {group_name} not found in cluster {cluster_id}.", code="GroupNotFound")
    return rows[0]


class GroupView(EasView):
    @extend_schema(operation_id="DescribeGroup", tags=["Groups"], responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, group_name):
        body = group_body(_group_row(request, cluster_id, group_name))
        members = selectors.group_members(request.user, cluster_id, group_name)
        body["Services"] = [{"ServiceName": m.name, "Weight": m.group_weight, "TrafficState": m.traffic_state}
                            for m in members]
        return self.respond(request, body)


class GroupEndpointsView(EasView):
    @extend_schema(operation_id="DescribeGroupEndpoints", tags=["Groups"], responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, group_name):
        _group_row(request, cluster_id, group_name)
        endpoint = {"EndpointType": "DefaultGateway", "BackendId": cluster_id, "PathType": "api/predict",
                    "InternetEndpoints": [predict_url(group_name)], "IntranetEndpoints": [predict_url(group_name)],
                    "Port": 0}
        return self.respond(request, {"Endpoints": [endpoint], "AccessToken": ""})


def _with_capacity(cluster: Cluster) -> dict:
    body = resource_body(cluster)
    if cluster.kind == "local":
        # The local cluster is this host: its capacity is what the host has.
        body["CpuCount"] = os.cpu_count() or 0
        body["ExtraData"]["MemoryMB"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return body


class ResourcesView(EasView):
    @extend_schema(operation_id="ListResources", tags=["Resource groups (clusters)"], parameters=[s.PageQuery],
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        query = self.query(s.PageQuery, request)
        page = selectors.paginate(clusters_visible_to(request.user), query["PageNumber"], query["PageSize"])
        return self.respond(request, page_body(page, "Resources", [_with_capacity(c) for c in page.items]))


def _cluster(user, cluster_id: str, resource_id: str) -> Cluster:
    cluster = clusters_visible_to(user).filter(name=resource_id).first()
    if cluster is None or cluster_id != resource_id:
        raise NotFound(f"Resource group {resource_id} not found.", code="ResourceNotFound")
    return cluster


class ResourceView(EasView):
    @extend_schema(operation_id="DescribeResource", tags=["Resource groups (clusters)"],
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, resource_id):
        return self.respond(request, _with_capacity(_cluster(request.user, cluster_id, resource_id)))


class ResourceServicesView(EasView):
    @extend_schema(operation_id="ListResourceServices", tags=["Resource groups (clusters)"],
                   parameters=[s.PageQuery], responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, resource_id):
        query = self.query(s.PageQuery, request)
        cluster = _cluster(request.user, cluster_id, resource_id)
        services = selectors.services_list(request.user, cluster=cluster.name)
        page = selectors.paginate(services, query["PageNumber"], query["PageSize"])
        sees_secrets = sees_secrets_of(request.user)
        items = [service_body(x, with_secrets=sees_secrets(x.project_id)) for x in page.items]
        return self.respond(request, page_body(page, "Services", items))
