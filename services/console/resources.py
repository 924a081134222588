"""Console-only reads of what runs: CPU and memory of local instances (sampled on request) and cluster capacity."""

import time
from dataclasses import dataclass
from datetime import timedelta

import psutil
from django.utils import timezone

from services.models import Cluster, Service
from services.ports import deployer

SAMPLE_SECONDS = 0.2
AGENT_SILENT_AFTER = timedelta(seconds=30)


@dataclass
class Usage:
    name: str
    cpu_percent: float | None
    rss_mb: float | None
    note: str = ""


def _tree(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def instance_usage(service: Service) -> dict[str, Usage]:
    """CPU % (of one core) and resident memory per local instance, its child processes included."""
    rows = [(name, process.pid) for name, process in deployer().local_processes(service).items() if process.pid]
    trees: dict[str, list[psutil.Process]] = {}
    usage: dict[str, Usage] = {}
    for name, pid in rows:
        try:
            trees[name] = _tree(pid)
            for process in trees[name]:
                process.cpu_percent(None)  # the first call only starts the measurement
        except psutil.Error:
            usage[name] = Usage(name, None, None, "process not found")
    if trees:
        time.sleep(SAMPLE_SECONDS)
    for name, processes in trees.items():
        cpu = rss = 0.0
        for process in processes:
            try:
                cpu += process.cpu_percent(None)
                rss += process.memory_info().rss
            except psutil.Error:
                continue
        usage[name] = Usage(name, round(cpu, 1), round(rss / 2**20, 1))
    return usage


@dataclass
class ClusterView:
    cluster: Cluster
    status: str
    status_ok: bool
    detail: str
    cpu_total: float | None
    memory_total_mb: int | None
    memory_available_mb: int | None
    cpu_requested: float
    memory_requested_mb: int
    services: list


def cluster_views(user, services_by_cluster: dict[int, list[Service]]) -> list[ClusterView]:
    """The clusters granted to the user's projects (every one for admins): the host's CPU and memory included."""
    from services.selectors.grants import clusters_visible_to

    views = []
    for cluster in clusters_visible_to(user):
        services = services_by_cluster.get(cluster.pk, [])
        running = [s for s in services if s.desired_state == "running"]
        cpu = sum(float(s.spec.get("metadata", {}).get("cpu", 0) or 0) * s.instance_count for s in running)
        memory = sum(int(s.spec.get("metadata", {}).get("memory", 0) or 0) * s.instance_count for s in running)
        status, ok, detail = _status(cluster)
        local = cluster.kind == "local"
        memory_info = psutil.virtual_memory() if local else None
        views.append(ClusterView(
            cluster=cluster, status=status, status_ok=ok, detail=detail,
            cpu_total=psutil.cpu_count() if local else None,
            memory_total_mb=memory_info.total // 2**20 if memory_info else None,
            memory_available_mb=memory_info.available // 2**20 if memory_info else None,
            cpu_requested=cpu, memory_requested_mb=memory, services=services,
        ))
    return views


def _status(cluster: Cluster) -> tuple[str, bool, str]:
    if cluster.kind != "local":
        # Not read here: a page view must not wait on a remote API server.
        return ("Registered", True, "Reconciled by the Kubernetes driver; its health: "
                f"GET /api/v2/clusters/{cluster.name}/health.")
    heartbeat = deployer().agent_heartbeat(cluster)
    if heartbeat is None:
        return "Ready", True, "No instance runs here now, so the node agent has nothing to report."
    if timezone.now() - heartbeat > AGENT_SILENT_AFTER:
        return "Agent silent", False, f"The node agent last reported at {heartbeat:%Y-%m-%d %H:%M:%S} UTC."
    return "Ready", True, f"The node agent reported at {heartbeat:%H:%M:%S} UTC."
