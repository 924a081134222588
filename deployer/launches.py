"""How one version's instances are launched on the local cluster: its model fetched into the shared cache
(deployer/fetches.py, raising FetchPending until it is), then the processor's command with the service's
resource limits."""

import hashlib
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

from processors.registry import ProcessorUnavailable, local_launch, local_pool_launch, urls_to_fetch
from services.encryption import encrypt
from services.models import Service, Version
from services.selectors import service_token
from services.servicefile.mesh import is_adapter_pool, is_pool

from .drivers.base import PermanentError
from .engines import EnginePending, engine_cache_dir, engine_dirs, engine_python
from .fetches import FetchPending, fetched_dir


def version_launch(service: Service, version: Version, *, restart_token: str) -> dict:
    service_file = version.service_file
    if is_pool(service_file) and not is_adapter_pool(service_file):  # an adapter pool is an engine, launched as one
        return _pool_launch(service, service_file, restart_token)
    engine, installing = None, None
    try:  # an LLM engine's environment (refused at once when this host cannot run it), installed beside the fetch
        engine = engine_python(service, service_file)
    except EnginePending as pending:
        installing = pending
    fetched = _fetched_dirs(service, version, installing)
    warm_up = fetched.get("warm_up_data_path")
    try:
        launch = local_launch(
            service_file, service_name=service.name, model_dir=fetched.get("model_path"),
            python=engine or sys.executable, processor_dir=fetched.get("processor_path"),
            warm_up_path=str(Path(warm_up) / _file_name(service_file["warm_up_data_path"])) if warm_up else None,
            cache_dir=engine_cache_dir(service) if engine else None,
        )
    except ProcessorUnavailable as exc:
        raise PermanentError(exc.reason, exc.message) from exc
    # What the agent's sandbox shows an engine besides the usual: its environment (read-only) and the service's
    # compile cache (read-write).
    engine_view = {"read_only_dirs": engine_dirs(engine), "shared_dirs": [engine_cache_dir(service)]} if engine else {}
    return {**_launch_fields(service, service_file, launch, restart_token), **engine_view}


def _pool_launch(service: Service, service_file: dict, restart_token: str) -> dict:
    """A pool's instance (docs/mesh.md): the model server with no model, which the placer fills. It reads the
    models from the shared cache, which every instance's sandbox shows read-only."""
    try:
        launch = local_pool_launch(service_file, service_name=service.name, python=sys.executable)
    except ProcessorUnavailable as exc:
        raise PermanentError(exc.reason, exc.message) from exc
    return _launch_fields(service, service_file, launch, restart_token)


def _launch_fields(service: Service, service_file: dict, launch, restart_token: str) -> dict:
    metadata = service_file.get("metadata", {})
    return {
        "argv": launch.argv,
        "env": launch.env,
        "cwd": launch.cwd,
        "health_path": launch.health_path,
        "ready_timeout_seconds": launch.ready_timeout_seconds,
        "grace_period_seconds": launch.grace_period_seconds,
        **token_env(service),
        "memory_limit_mb": int(metadata.get("memory") or 0) or None,
        "cpu": metadata.get("cpu"),
        "restart_token": restart_token,
    }


def _fetched_dirs(service: Service, version: Version, installing: EnginePending | None = None) -> dict[str, str]:
    """Every file the version needs, each asked for at once so they download side by side (and beside the
    engine's install, when one is under way)."""
    fetched, pending = {}, [installing.url] if installing else []
    for field, url in urls_to_fetch(version.service_file).items():
        try:
            fetched[field] = fetched_dir(service, version, url)
        except FetchPending as exc:
            pending.append(exc.url)
    if pending:
        raise FetchPending(", ".join(pending))
    return fetched


def token_env(service: Service) -> dict:
    """The service token for instances to check direct (EAS direct-connection) calls. Encrypted, with a
    fingerprint so a rotated token is noticed without decrypting (encryption is not deterministic)."""
    token = service_token(service)
    return {"secret_env": {"FERRY_SERVICE_TOKEN": encrypt(token)},
            "token_sha256": hashlib.sha256(token.encode()).hexdigest()}


def limits_message(service: Service, version: Version) -> str:
    metadata = version.service_file.get("metadata", {})
    memory = metadata.get("memory")
    parts = [f"memory limited to {memory} MB per instance" if memory else "no memory limit"]
    if metadata.get("cpu"):
        parts.append(f"cpu {metadata['cpu']} not enforced (the local cluster shares this host's cores)")
    if metadata.get("gpu"):
        parts.append(f"gpu {metadata['gpu']} not available on the local cluster")
    return f"Started instances of version {version.number} of {service.name}: " + "; ".join(parts)


def _file_name(url: str) -> str:
    return unquote(urlparse(url).path).rstrip("/").rsplit("/", 1)[-1]
