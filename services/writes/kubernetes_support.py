"""What a Kubernetes cluster lets a service file ask for (host paths, pod annotations, volume kinds under its
Pod Security level), checked at create and update so a refused file is never stored. The rules are the
renderer's own (deployer/kubernetes/tenancy.py), which also refuses at render time."""

from __future__ import annotations

from services.errors import InvalidRequest
from services.models import Cluster, ClusterKind
from services.ports import deployer


def kubernetes_check_allowed(spec: dict, *, cluster: Cluster) -> None:
    if cluster.kind != ClusterKind.KUBERNETES:
        return
    problems = deployer().service_file_problems(spec, cluster=cluster)
    if problems:
        errors = [{"Path": path, "Message": message} for path, message in problems]
        raise InvalidRequest("; ".join(f"{e['Path']}: {e['Message']}" for e in errors), code="InvalidServiceConfig",
                             errors=errors)
