"""How one version's instances are launched on the local cluster: its model fetched into the shared cache,
then the processor's command with the service's resource limits."""

import hashlib
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

from django.conf import settings

from processors.fetch import ANONYMOUS, ModelFetchError, fetch_model
from processors.fetch_policy import FetchPolicy
from processors.registry import ProcessorUnavailable, local_launch, urls_to_fetch
from services.encryption import encrypt
from services.models import Service, Version
from services.selectors import service_token
from services.selectors.credentials import project_storage_credentials
from services.services import event_record

from .drivers.base import PermanentError


def version_launch(service: Service, version: Version, *, restart_token: str) -> dict:
    service_file = version.service_file
    fetched = {field: _fetched_dir(service, version, url) for field, url in urls_to_fetch(service_file).items()}
    warm_up = fetched.get("warm_up_data_path")
    try:
        launch = local_launch(
            service_file, service_name=service.name, model_dir=fetched.get("model_path"), python=sys.executable,
            processor_dir=fetched.get("processor_path"),
            warm_up_path=str(Path(warm_up) / _file_name(service_file["warm_up_data_path"])) if warm_up else None,
        )
    except ProcessorUnavailable as exc:
        raise PermanentError(exc.reason, exc.message) from exc
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


def _fetched_dir(service: Service, version: Version, url: str) -> str:
    """Model, processor code and warm-up data all go through the shared, content-addressed cache."""
    event_record(service=service, reason="FetchingModel", message=f"Fetching {url} for version {version.number}")
    try:
        fetched = fetch_model(url, cache_dir=Path(settings.VAR_DIR) / "models", policy=fetch_policy(),
                              s3_endpoint=_s3_endpoint(version.service_file), s3_credentials=_s3_credentials(service),
                              on_progress=_ProgressEvents(service, url))
    except ModelFetchError as exc:
        raise PermanentError("ModelFetchFailed", f"Could not fetch {exc}") from exc
    event_record(service=service, reason="FetchedModel", message=f"Fetched {url} into the model cache")
    return str(fetched)


def fetch_policy() -> FetchPolicy:
    """What a user's source may reach (docs/security.md, Sources, limits and credentials). The time limit also
    bounds how long one fetch holds the worker running this reconcile, so other projects' wait is bounded."""
    return FetchPolicy.build(
        file_roots=settings.FERRY_FILE_SOURCE_ROOTS, forbidden_dirs=[settings.VAR_DIR],
        allowed_networks=settings.FERRY_FETCH_ALLOWED_NETWORKS, max_bytes=settings.FERRY_FETCH_MAX_BYTES,
        timeout_seconds=settings.FERRY_FETCH_TIMEOUT_SECONDS)


def _s3_credentials(service: Service):
    """The project's own access key; else the platform's only for the projects an admin lists; else none at all
    (a public bucket still works), so one project's service never reads a bucket with credentials not its own."""
    own = project_storage_credentials(service.project)
    if own is not None:
        return own
    return None if service.project.name in settings.FERRY_S3_PLATFORM_CREDENTIALS_PROJECTS else ANONYMOUS


def _file_name(url: str) -> str:
    return unquote(urlparse(url).path).rstrip("/").rsplit("/", 1)[-1]


def _s3_endpoint(service_file: dict) -> str | None:
    """An oss:// or s3:// URL's endpoint comes from the file (EAS style: oss_endpoint or a storage entry)."""
    if service_file.get("oss_endpoint"):
        endpoint = service_file["oss_endpoint"]
        return endpoint if "://" in endpoint else f"https://{endpoint}"
    for entry in service_file.get("storage") or []:
        endpoint = (entry.get("oss") or {}).get("endpoint")
        if endpoint:
            return endpoint if "://" in endpoint else f"https://{endpoint}"
    return None


class _ProgressEvents:
    """Records download progress as events at each quarter, not for every chunk."""

    def __init__(self, service: Service, url: str):
        self.service = service
        self.url = url
        self.reported_quarter = 0

    def __call__(self, done: int, total: int | None) -> None:
        if not total:
            return
        quarter = min(4, done * 4 // total)
        if quarter > self.reported_quarter and quarter < 4:
            self.reported_quarter = quarter
            event_record(service=self.service, reason="FetchingModel",
                         message=f"Fetched {quarter * 25} % of model {self.url} ({done // 2**20} of {total // 2**20} MB)")
