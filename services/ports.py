"""The deployer as the services app sees it: a port, filled when Django starts.

The deployer depends on services (it reads the models, records events through the writes); services never
import the deployer (docs/architecture.md, "Layers"; tests/unit/test_layers.py fails when a module does). What
the writes, selectors, API and console need of it goes through `deployer()`, which the deployer app registers
in its `ready()` (deployer/port.py). A process that never loaded the deployer app fails loudly on first use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class ManifestRefused(Exception):
    """A service cannot be rendered for its Kubernetes cluster; `path` names the field."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class LocalProcess:
    """What the node agent runs for one instance of the local cluster."""

    name: str
    pid: int | None
    port: int | None
    argv: tuple[str, ...]
    last_exit_code: int | None


class Deployer(Protocol):
    def reconcile_soon(self, service_id: int) -> None:
        """Queues a reconcile of the service once the caller's transaction commits (never inside it)."""

    def kubeconfig_problem(self, kubeconfig: str) -> str | None:
        """Why a kubeconfig is refused (unparseable, `exec` or `auth-provider` entries), or None."""

    def cluster_settings_problems(self, *, flavor: str, traffic_api: str, settings: dict) -> list[tuple[str, str]]:
        """(setting, message) for each Kubernetes cluster setting the renderer could not honour."""

    def service_file_problems(self, spec: dict, *, cluster) -> list[tuple[str, str]]:
        """(field, message) for each part of a service file the Kubernetes cluster does not allow."""

    def cluster_health(self, cluster) -> dict:
        """A Kubernetes cluster's server version, nodes and missing APIs, read now (one attempt)."""

    def service_manifests(self, service) -> tuple[str, list[dict]]:
        """(namespace, manifests) a service (or a draft with the same attributes) renders to; raises
        ManifestRefused."""

    def manifests_yaml(self, manifests: list[dict]) -> str:
        """A multi-document YAML stream of rendered manifests."""

    def instance_logs(self, service, instance_names: list[str], *,
                      since: datetime | None) -> dict[str, Iterable[str]] | None:
        """Each instance's log lines from its cluster, read through one connection (None: the cluster has no
        driver, so nothing ran)."""

    def program_log_tail(self, service, instance_name: str, lines: int) -> tuple[str, ...]:
        """The last lines the instance's program wrote, without the node agent's notes; () if unreadable."""

    def local_processes(self, service) -> dict[str, LocalProcess]:
        """The node agent's processes of a local service, by instance name."""

    def agent_heartbeat(self, cluster) -> datetime | None:
        """When the node agent of a local cluster last reported (None: it has nothing to report)."""

    def benchmark_run_soon(self, task_id: int, attempt: int) -> None:
        """Queues a benchmark task's run (its own queue) once the caller's transaction commits."""


_registered: Deployer | None = None


def register_deployer(implementation: Deployer) -> None:
    global _registered
    _registered = implementation


def deployer() -> Deployer:
    if _registered is None:
        raise RuntimeError("No deployer is registered: add the deployer app to INSTALLED_APPS (deployer/port.py).")
    return _registered
