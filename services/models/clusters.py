"""Where services run. EAS calls a cluster a resource group; its name is the ClusterId of EAS paths."""

from django.conf import settings
from django.db import models


class ClusterKind(models.TextChoices):
    LOCAL = "local", "Local (processes on this host)"
    KUBERNETES = "kubernetes", "Kubernetes"


class ClusterFlavor(models.TextChoices):
    RAW = "raw", "Deployment + Service + HPA"
    KNATIVE = "knative", "Knative Service"


class TrafficApi(models.TextChoices):
    GATEWAY_API = "gateway-api", "Gateway API HTTPRoute"
    ISTIO = "istio", "Istio VirtualService"


class Cluster(models.Model):
    name = models.SlugField(max_length=63, unique=True)
    kind = models.CharField(max_length=16, choices=ClusterKind.choices)
    flavor = models.CharField(max_length=16, choices=ClusterFlavor.choices, default=ClusterFlavor.RAW)
    traffic_api = models.CharField(max_length=16, choices=TrafficApi.choices, default=TrafficApi.GATEWAY_API)
    kubeconfig_encrypted = models.TextField(blank=True)
    settings = models.JSONField(default=dict, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_cluster"
            )
        ]

    def __str__(self) -> str:
        return self.name


class ClusterGrant(models.Model):
    """An admin's grant of a cluster to a project: its members may deploy there and see the cluster (and, for
    the local cluster, the host's CPU and memory). Without a grant the cluster does not exist for them."""

    project = models.ForeignKey("services.Project", on_delete=models.CASCADE, related_name="cluster_grants")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="grants")
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cluster", "project"]
        constraints = [models.UniqueConstraint(fields=["project", "cluster"], name="unique_cluster_grant")]

    def __str__(self) -> str:
        return f"{self.cluster} granted to {self.project}"
