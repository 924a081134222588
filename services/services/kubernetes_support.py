"""What a Kubernetes cluster lets a service file ask for (host paths, pod annotations, volume kinds under its
Pod Security level), checked at create and update so a refused file is never stored. The rules are the
renderer's own (deployer/kubernetes/tenancy.py), which also refuses at render time."""

from __future__ import annotations

from services.errors import InvalidRequest
from services.models import Cluster, ClusterKind


def kubernetes_check_allowed(spec: dict, *, cluster: Cluster) -> None:
    if cluster.kind != ClusterKind.KUBERNETES:
        return
    from deployer.kubernetes.build import cluster_settings
    from deployer.kubernetes.tenancy import service_file_problems

    settings = cluster_settings(cluster)
    problems = service_file_problems(spec, host_path_roots=settings.host_path_roots,
                                     pod_security=settings.pod_security, knative=settings.flavor == "knative")
    if problems:
        errors = [{"Path": path, "Message": message} for path, message in problems]
        raise InvalidRequest("; ".join(f"{e['Path']}: {e['Message']}" for e in errors), code="InvalidServiceConfig",
                             errors=errors)
