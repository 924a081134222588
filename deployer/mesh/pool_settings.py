"""A pool's placement settings as its file gives them (`model_mesh`, `metadata.memory`), with Ferry's defaults.
Reads only the values passed (and, to estimate a model never loaded, its local files' sizes)."""

import functools
import os

from services.servicefile.mesh import ADAPTER_POOL_PROCESSORS, is_adapter_pool

from .placement import PlacementSettings
from .servers import ADAPTER_SLOT_BYTES, adapter_budget_bytes

MIB = 2**20
DEFAULT_LOAD_TIMEOUT_SECONDS = 30
DEFAULT_MEMORY_MB = 1024  # the service file's own default for metadata.memory
# Planned with before a version was ever loaded: its files' size times this (a loaded sklearn or xgboost model
# takes about its pickle's size again in Python objects), at least FLOOR.
FILES_TO_MEMORY = 2
ESTIMATE_FLOOR_BYTES = 4 * MIB


def placement_settings(spec: dict) -> PlacementSettings:
    mesh = spec.get("model_mesh") or {}
    defaults = PlacementSettings()
    return PlacementSettings(rate_per_copy=float(mesh.get("rate_per_copy", defaults.rate_per_copy)),
                             max_copies=int(mesh.get("max_copies", defaults.max_copies)),
                             idle_seconds=float(mesh.get("idle_seconds", defaults.idle_seconds)))


def load_timeout_seconds(spec: dict) -> int:
    return int((spec.get("model_mesh") or {}).get("load_timeout") or DEFAULT_LOAD_TIMEOUT_SECONDS)


def budget_bytes(spec: dict, baseline_bytes: int) -> int:
    """What one instance may give to models: model_mesh.model_memory, else the instance's memory
    (metadata.memory, which also limits the process) less what the server took before any model."""
    if is_adapter_pool(spec):
        return adapter_budget_bytes(spec)  # slots, not bytes: deployer/mesh/servers.py
    mesh = spec.get("model_mesh") or {}
    if mesh.get("model_memory"):
        return int(mesh["model_memory"]) * MIB
    memory = int((spec.get("metadata") or {}).get("memory") or DEFAULT_MEMORY_MB)
    return max(memory * MIB - baseline_bytes, 0)


def size_estimate(version) -> int:
    """The memory a version's last load took, else an estimate from its files (local paths only)."""
    if version.service_file.get("processor") in ADAPTER_POOL_PROCESSORS:
        return ADAPTER_SLOT_BYTES  # an adapter takes one of its engine's slots
    if version.model_memory_bytes:
        return int(version.model_memory_bytes)
    path = version.service_file.get("model_path", "")
    return max(_files_bytes(path) * FILES_TO_MEMORY, ESTIMATE_FLOOR_BYTES)


@functools.lru_cache(maxsize=4096)  # every placer pass estimates every model never loaded: walk its files once
def _files_bytes(path: str) -> int:
    path = path.removeprefix("file://")
    if not path.startswith("/") or not os.path.exists(path):
        return 0
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
