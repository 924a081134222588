"""Clusters (register by kubeconfig or in-cluster, settings, health) and the manifests a service renders to
on a Kubernetes cluster (what `--dry-run` shows). The kubeconfig is write-only."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from services import selectors
from services.ports import deployer
from services.selectors.clusters import (
    cluster_describe,
    cluster_health,
    service_file_manifests,
    service_manifests,
)
from services.selectors.grants import cluster_visible, clusters_visible_to
from services.writes.clusters import cluster_delete, cluster_register, cluster_update

from .base import EasView

TAG = ["Clusters"]


class RegisterClusterBody(serializers.Serializer):
    ClusterName = serializers.CharField(max_length=63)
    Kubeconfig = serializers.CharField(required=False, default="", allow_blank=True, trim_whitespace=False)
    InCluster = serializers.BooleanField(required=False, default=False)
    Flavor = serializers.CharField(required=False, default="raw")
    TrafficApi = serializers.CharField(required=False, default="gateway-api")
    Settings = serializers.DictField(required=False, default=dict)


class UpdateClusterBody(serializers.Serializer):
    Kubeconfig = serializers.CharField(required=False, trim_whitespace=False)
    Flavor = serializers.CharField(required=False)
    TrafficApi = serializers.CharField(required=False)
    Settings = serializers.DictField(required=False)


class ClustersView(EasView):
    @extend_schema(operation_id="ListClusters", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        clusters = [cluster_describe(c) for c in clusters_visible_to(request.user)]
        return self.respond(request, {"Clusters": clusters, "TotalCount": len(clusters)})

    @extend_schema(operation_id="CreateCluster", tags=TAG, request=RegisterClusterBody,
                   responses={201: OpenApiTypes.OBJECT},
                   description="Registers a Kubernetes cluster by kubeconfig (stored encrypted, never shown "
                               "again) or as the cluster Ferry runs in (InCluster). Administrators only.")
    def post(self, request):
        body = self.body(RegisterClusterBody, request)
        cluster = cluster_register(actor=request.user, name=body["ClusterName"], kubeconfig=body["Kubeconfig"],
                                   in_cluster=body["InCluster"], flavor=body["Flavor"], traffic_api=body["TrafficApi"],
                                   settings=body["Settings"])
        return self.respond(request, {"ClusterName": cluster.name, "Message": f"Registered cluster {cluster.name}"},
                            status=201)


class ClusterView(EasView):
    @extend_schema(operation_id="DescribeCluster", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_name):
        return self.respond(request, cluster_describe(cluster_visible(request.user, cluster_name)))

    @extend_schema(operation_id="UpdateCluster", tags=TAG, request=UpdateClusterBody,
                   responses={200: OpenApiTypes.OBJECT})
    def put(self, request, cluster_name):
        body = self.body(UpdateClusterBody, request)
        cluster = cluster_update(actor=request.user, cluster=cluster_visible(request.user, cluster_name),
                                 flavor=body.get("Flavor"), traffic_api=body.get("TrafficApi"),
                                 settings=body.get("Settings"), kubeconfig=body.get("Kubeconfig"))
        return self.respond(request, cluster_describe(cluster))

    @extend_schema(operation_id="DeleteCluster", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def delete(self, request, cluster_name):
        cluster_delete(actor=request.user, cluster=cluster_visible(request.user, cluster_name))
        return self.respond(request, {"Message": f"Removed cluster {cluster_name}"})


class ClusterHealthView(EasView):
    @extend_schema(operation_id="DescribeClusterHealth", tags=TAG, responses={200: OpenApiTypes.OBJECT},
                   description="Reads the server version and the nodes' capacity (CPU, memory, GPUs) now, and "
                               "checks that the APIs the cluster's flavor needs are served.")
    def get(self, request, cluster_name):
        return self.respond(request, cluster_health(cluster_visible(request.user, cluster_name)))


def _manifests_body(cluster, namespace: str, manifests: list[dict]) -> dict:
    return {"ClusterName": cluster.name, "Namespace": namespace, "Flavor": cluster.flavor,
            "Manifests": manifests, "Yaml": deployer().manifests_yaml(manifests)}


class ServiceManifestsView(EasView):
    @extend_schema(operation_id="DescribeServiceManifests", tags=TAG, responses={200: OpenApiTypes.OBJECT},
                   description="The Kubernetes objects the service renders to on its cluster, as YAML (Yaml) "
                               "and as objects (Manifests).")
    def get(self, request, cluster_id, service_name):
        # The manifests carry env values and pull secrets' names as they are: for those who may change them
        # (viewers see the masked service file instead, docs/security.md).
        service = self.service(request, cluster_id, service_name, write=True)
        namespace, manifests = service_manifests(service)
        return self.respond(request, _manifests_body(service.cluster, namespace, manifests))

    @extend_schema(operation_id="PreviewUpdateServiceManifests", tags=TAG, request=OpenApiTypes.OBJECT,
                   responses={200: OpenApiTypes.OBJECT},
                   description="Dry run of UpdateService: the body is the same partial service file; nothing is "
                               "changed, the result is what the updated version renders to.")
    def post(self, request, cluster_id, service_name):
        # A preview of an update: for those who may update (viewers get 403, as for UpdateService).
        service = self.service(request, cluster_id, service_name, write=True)
        namespace, manifests = service_file_manifests(cluster=service.cluster, project=service.project,
                                                      document=request.data, current=service)
        return self.respond(request, _manifests_body(service.cluster, namespace, manifests))


class ManifestsPreviewView(EasView):
    @extend_schema(operation_id="PreviewCreateServiceManifests", tags=TAG, request=OpenApiTypes.OBJECT,
                   responses={200: OpenApiTypes.OBJECT},
                   description="Dry run of CreateService: the body is a service file; nothing is created. "
                               "metadata.resource names the cluster, as for CreateService.")
    def post(self, request):
        from services.servicefile import validate_service_file
        from services.writes.catalog import cluster_for_file

        project = selectors.project_for_write(request.user, request.query_params.get("WorkspaceId"))
        cluster = cluster_for_file(validate_service_file(request.data), project=project)
        namespace, manifests = service_file_manifests(cluster=cluster, project=project, document=request.data)
        return self.respond(request, _manifests_body(cluster, namespace, manifests))
