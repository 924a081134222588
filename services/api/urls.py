"""The EAS OpenAPI (2021-07-01) paths, under /api/v2/. ClusterId is a Ferry cluster's name."""

from django.urls import include, path

from .views import clone, diagnosis, groups, labels, mesh, observe, rollouts, scaling, traffic
from .views import services as svc

SERVICE = "services/<str:cluster_id>/<str:service_name>"
INSTANCE = f"{SERVICE}/instances/<str:instance_name>"

urlpatterns = [
    path("services", svc.ServicesView.as_view()),
    path(SERVICE, svc.ServiceView.as_view()),
    path(f"{SERVICE}/start", svc.StartServiceView.as_view()),
    path(f"{SERVICE}/stop", svc.StopServiceView.as_view()),
    path(f"{SERVICE}/restart", svc.RestartServiceView.as_view()),
    path(f"{SERVICE}/versions", traffic.VersionsView.as_view()),
    path(f"{SERVICE}/version", traffic.VersionView.as_view()),
    path(f"{SERVICE}/release", traffic.ReleaseView.as_view()),
    path(f"{SERVICE}/traffic", traffic.TrafficView.as_view()),
    path(f"{SERVICE}/canary", traffic.CanaryView.as_view()),
    path(f"{SERVICE}/mirror", traffic.MirrorView.as_view()),
    path(f"{SERVICE}/rollout", rollouts.RolloutView.as_view()),
    path(f"{SERVICE}/rollout/<str:action>", rollouts.RolloutActionView.as_view()),
    path(f"{SERVICE}/autoscaler", scaling.AutoScalerView.as_view()),
    path(f"{SERVICE}/cronscaler", scaling.CronScalerView.as_view()),
    path(f"{SERVICE}/instances", observe.InstancesView.as_view()),
    path(f"{SERVICE}/events", observe.EventsView.as_view()),
    path(f"{SERVICE}/logs", observe.LogsView.as_view()),
    path(f"{SERVICE}/endpoints", observe.EndpointsView.as_view()),
    path(f"{SERVICE}/label", labels.LabelView.as_view()),
    path(f"{SERVICE}/lock", labels.SafetyLockView.as_view()),
    path(f"{SERVICE}/clone", clone.CloneView.as_view()),
    path(f"{SERVICE}/diagnosis", diagnosis.ServiceDiagnosisView.as_view()),
    path(f"{SERVICE}/placements", mesh.PlacementsView.as_view()),  # Ferry's own: the model mesh (docs/mesh.md)
    path(f"{INSTANCE}/diagnosis", diagnosis.InstanceDiagnosisView.as_view()),
    path(f"{INSTANCE}/containers", diagnosis.ContainersView.as_view()),
    path("public/instance_types", diagnosis.MachineSpecView.as_view()),
    path("groups", groups.GroupsView.as_view()),
    path("groups/<str:cluster_id>/<str:group_name>", groups.GroupView.as_view()),
    path("groups/<str:cluster_id>/<str:group_name>/endpoints", groups.GroupEndpointsView.as_view()),
    path("resources", groups.ResourcesView.as_view()),
    path("resources/<str:cluster_id>/<str:resource_id>", groups.ResourceView.as_view()),
    path("resources/<str:cluster_id>/<str:resource_id>/services", groups.ResourceServicesView.as_view()),
    path("", include("services.api.urls_credentials")),
]

from .views import clusters  # noqa: E402 -- Kubernetes clusters and rendered manifests (docs/kubernetes.md)

urlpatterns += [
    path("clusters", clusters.ClustersView.as_view()),
    path("clusters/<str:cluster_name>", clusters.ClusterView.as_view()),
    path("clusters/<str:cluster_name>/health", clusters.ClusterHealthView.as_view()),
    path(f"{SERVICE}/manifests", clusters.ServiceManifestsView.as_view()),
    path("manifests", clusters.ManifestsPreviewView.as_view()),
]

from .views import benchmarks  # noqa: E402 -- EAS's benchmark tasks (docs/benchmarks.md)

BENCHMARK = "benchmark-tasks/<str:cluster_id>/<str:task_name>"
urlpatterns += [
    path("benchmark-tasks", benchmarks.BenchmarkTasksView.as_view()),
    path(BENCHMARK, benchmarks.BenchmarkTaskView.as_view()),
    path(f"{BENCHMARK}/start", benchmarks.StartBenchmarkTaskView.as_view()),
    path(f"{BENCHMARK}/stop", benchmarks.StopBenchmarkTaskView.as_view()),
    path(f"{BENCHMARK}/report", benchmarks.BenchmarkReportView.as_view()),
]
