"""The deployer's side of services.ports: what the services app may ask of it, registered at start-up
(deployer/apps.py). Each method is the one path from a write, selector or view into the deployer."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from types import SimpleNamespace

from django.db import transaction
from django.db.models import Max

from services.ports import LocalProcess, ManifestRefused

from .agent.logs import AGENT_TAG
from .drivers import driver_for
from .drivers.base import PermanentError, TransientError
from .kubernetes.build import cluster_settings, service_desired
from .kubernetes.client import KubeApi
from .kubernetes.connect import api_client_for, kubeconfig_problem
from .kubernetes.health import cluster_health
from .kubernetes.render import render, to_yaml
from .kubernetes.tenancy import cluster_settings_problems, service_file_problems
from .kubernetes.volumes import RenderError
from .models import LocalInstance
from .tasks import reconcile_service, run_benchmark

UNHEALTHY = {"Healthy": False, "ServerVersion": "", "Nodes": 0, "ReadyNodes": 0, "Capacity": {}, "Allocatable": {},
             "MissingApis": []}


class DeployerPort:
    def reconcile_soon(self, service_id: int) -> None:
        transaction.on_commit(lambda: reconcile_service.delay(service_id))

    def benchmark_run_soon(self, task_id: int, attempt: int) -> None:
        transaction.on_commit(lambda: run_benchmark.delay(task_id, attempt))

    def kubeconfig_problem(self, kubeconfig: str) -> str | None:
        return kubeconfig_problem(kubeconfig)

    def cluster_settings_problems(self, *, flavor: str, traffic_api: str, settings: dict) -> list[tuple[str, str]]:
        problems = list(cluster_settings_problems(settings))
        if problems:
            return problems
        try:  # the same parsing the driver does, so what is stored can be rendered
            cluster_settings(SimpleNamespace(flavor=flavor, traffic_api=traffic_api, settings=settings))
        except (KeyError, TypeError, ValueError) as exc:
            return [("", f"cannot be used: {exc}")]
        return []

    def service_file_problems(self, spec: dict, *, cluster) -> list[tuple[str, str]]:
        settings = cluster_settings(cluster)
        return service_file_problems(spec, host_path_roots=settings.host_path_roots,
                                     pod_security=settings.pod_security, knative=settings.flavor == "knative")

    def cluster_health(self, cluster) -> dict:
        try:
            api = KubeApi(api_client_for(cluster), attempts=1)
        except PermanentError as exc:
            return {**UNHEALTHY, "Message": exc.message}
        return cluster_health(api, flavor=cluster.flavor, traffic_api=cluster.traffic_api)

    def service_manifests(self, service) -> tuple[str, list[dict]]:
        desired = service_desired(service)
        try:
            return desired.namespace, render(desired)
        except RenderError as exc:
            raise ManifestRefused(exc.path, exc.message) from None

    def manifests_yaml(self, manifests: list[dict]) -> str:
        return to_yaml(manifests)

    def instance_logs(self, service, instance_names: list[str], *, since: datetime | None):
        driver = driver_for(service.cluster)  # one driver: on Kubernetes, one API client for every instance
        if driver is None:
            return None
        return {name: driver.logs(service, name, since=since, follow=False) for name in instance_names}

    def program_log_tail(self, service, instance_name: str, lines: int) -> tuple[str, ...]:
        logs = self.instance_logs(service, [instance_name], since=None)
        if logs is None:
            return ()
        log = logs[instance_name]
        try:
            return tuple(deque((line for line in log if line.strip() and AGENT_TAG not in line), maxlen=lines))
        except (OSError, TransientError, PermanentError):
            return ()  # a diagnosis without the log lines is still worth giving

    def local_processes(self, service) -> dict[str, LocalProcess]:
        return {row.name: LocalProcess(name=row.name, pid=row.pid, port=row.port,
                                       argv=tuple((row.launch or {}).get("argv") or ()),
                                       last_exit_code=row.last_exit_code)
                for row in LocalInstance.objects.filter(service=service)}

    def agent_heartbeat(self, cluster) -> datetime | None:
        return LocalInstance.objects.filter(service__cluster=cluster).aggregate(last=Max("heartbeat_at"))["last"]
