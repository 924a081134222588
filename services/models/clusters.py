"""Where services run. EAS calls a cluster a resource group; its name is the ClusterId of EAS paths."""

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
