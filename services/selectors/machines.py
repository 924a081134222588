"""What the machines of Ferry's clusters offer (EAS DescribeMachineSpec).

Only the local cluster is described: it is this host, so its CPUs and memory are known here. A Kubernetes
cluster's nodes are the cluster's business (and EAS answers this operation for its shared pool only).
"""

import os
from dataclasses import dataclass

from services.models import ClusterKind

from .grants import clusters_visible_to


@dataclass(frozen=True)
class MachineFacts:
    instance_type: str  # the cluster's name: metadata.resource of a service that runs there
    cpu: int
    memory_mb: int


def host_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def machine_specs(user, instance_types: list[str] | None = None) -> list[MachineFacts]:
    """Only clusters granted to a project of `user` (all for admins): the host's size is not everyone's business."""
    clusters = clusters_visible_to(user).filter(kind=ClusterKind.LOCAL).order_by("name")
    if instance_types:
        clusters = clusters.filter(name__in=instance_types)
    return [MachineFacts(instance_type=cluster.name, cpu=os.cpu_count() or 1, memory_mb=host_memory_mb())
            for cluster in clusters]
