"""A registered cluster's health: can Ferry reach it, which Kubernetes it runs, what its nodes hold, and
whether the APIs its flavor needs are served."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from kubernetes.utils import parse_quantity

from deployer.drivers.base import PermanentError, TransientError

if TYPE_CHECKING:  # the client imports deployer.drivers, which imports this package
    from .client import KubeApi

GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")
REQUIRED_APIS = {
    ("raw", "gateway-api"): [("gateway.networking.k8s.io/v1", "HTTPRoute")],
    ("raw", "istio"): [("networking.istio.io/v1", "VirtualService"), ("networking.istio.io/v1", "DestinationRule")],
    ("knative", "gateway-api"): [("serving.knative.dev/v1", "Service")],
    ("knative", "istio"): [("serving.knative.dev/v1", "Service")],
}


def cluster_health(api: KubeApi, *, flavor: str = "raw", traffic_api: str = "gateway-api") -> dict:
    """{"Healthy", "Message", "ServerVersion", "Nodes", "ReadyNodes", "Capacity", "Allocatable",
    "MissingApis"}. Never raises for an unreachable cluster: that is the answer."""
    try:
        version = api.version()
        nodes = api.list("v1", "Node")
    except (TransientError, PermanentError) as exc:
        return {"Healthy": False, "Message": str(exc), "ServerVersion": "", "Nodes": 0, "ReadyNodes": 0,
                "Capacity": {}, "Allocatable": {}, "MissingApis": []}
    missing = [f"{av} {kind}" for av, kind in REQUIRED_APIS.get((flavor, traffic_api), []) if not api.served(av, kind)]
    ready = sum(1 for node in nodes if _ready(node))
    healthy = ready > 0 and not missing
    message = "ok" if healthy else ("no node is Ready" if not ready else f'missing APIs: {", ".join(missing)}')
    return {"Healthy": healthy, "Message": message, "ServerVersion": version.get("git_version") or
            version.get("gitVersion", ""), "Nodes": len(nodes), "ReadyNodes": ready,
            "Capacity": _total(nodes, "capacity"), "Allocatable": _total(nodes, "allocatable"), "MissingApis": missing}


def _ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _total(nodes: list[dict], field: str) -> dict:
    cpu, memory, gpus = Decimal(0), Decimal(0), Decimal(0)
    for node in nodes:
        amounts = (node.get("status") or {}).get(field) or {}
        cpu += parse_quantity(amounts.get("cpu", "0"))
        memory += parse_quantity(amounts.get("memory", "0"))
        gpus += sum(parse_quantity(amounts.get(name, "0")) for name in GPU_RESOURCES)
    return {"Cpu": float(cpu), "MemoryMiB": int(memory / (1024 * 1024)), "Gpu": int(gpus)}
