"""Model fetches for the local cluster, on a queue of their own.

A version's first launch needs its model, processor code and warm-up data in the model cache. A download can
take minutes; done inside the reconcile, it would hold a reconcile worker that long, and other projects'
reconciles would queue behind it. So the reconcile only asks (`fetched_dir`): a fetch done for this version and
URL gives its directory; otherwise `deployer.fetch_source` is queued on the `fetch` queue (served by the
`fetcher` worker, not the reconcile workers) and the version waits (`FetchPending`). The fetch, when it ends,
queues a reconcile. A failed fetch is reported once, as the version's permanent failure, and forgotten, so the
next reconcile a user asks for (an update, a restart) fetches again.
"""

from datetime import timedelta
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from processors.fetch import ANONYMOUS, ModelFetchError, fetch_model
from processors.fetch_policy import FetchPolicy
from services.models import Service, Version
from services.selectors.credentials import project_storage_credentials
from services.writes import event_record

from .drivers.base import PermanentError
from .models import ModelFetch, ModelFetchState

FETCH_QUEUE = "fetch"
FETCH_TASK = "deployer.fetch_source"
# A fetch still pending this long after the fetch's own time limit was lost with its worker: queue it again.
LOST_AFTER = timedelta(seconds=120)


class FetchPending(Exception):
    """The version's files are being fetched; its instances start once they are in the cache."""

    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


def fetched_dir(service: Service, version: Version, url: str) -> str:
    """The cache directory holding `url` for `version`; raises FetchPending while it is fetched and
    PermanentError (ModelFetchFailed) once when it could not be."""
    fetch = _fetch_row(version, url)
    if fetch.state == ModelFetchState.DONE and not Path(fetch.directory).is_dir():
        fetch = _requeue(fetch)  # the cache was cleared under it
    elif fetch.state == ModelFetchState.PENDING and timezone.now() - fetch.requested_at > _lost_after():
        fetch = _requeue(fetch)
    if fetch.state == ModelFetchState.DONE:
        return fetch.directory
    if fetch.state == ModelFetchState.FAILED:
        ModelFetch.objects.filter(pk=fetch.pk).delete()
        raise PermanentError("ModelFetchFailed", fetch.message)
    raise FetchPending(url)


def fetch_run(fetch_id: int) -> int | None:
    """The fetcher's side: downloads one pending fetch and records how it ended. Returns the service's id, for
    the reconcile that launches its instances, or None when there was nothing to do."""
    fetch = ModelFetch.objects.select_related("version__service__project").filter(pk=fetch_id).first()
    if fetch is None or fetch.state != ModelFetchState.PENDING:
        return None
    version, url = fetch.version, fetch.url
    service = version.service
    event_record(service=service, reason="FetchingModel", message=f"Fetching {url} for version {version.number}")
    try:
        directory = fetch_model(url, cache_dir=Path(settings.VAR_DIR) / "models", policy=fetch_policy(),
                                s3_endpoint=_s3_endpoint(version.service_file),
                                s3_credentials=_s3_credentials(service), on_progress=_ProgressEvents(service, url))
    except ModelFetchError as exc:
        ModelFetch.objects.filter(pk=fetch.pk).update(state=ModelFetchState.FAILED, message=f"Could not fetch {exc}",
                                                      updated_at=timezone.now())
        return service.pk
    ModelFetch.objects.filter(pk=fetch.pk).update(state=ModelFetchState.DONE, directory=str(directory),
                                                  updated_at=timezone.now())
    event_record(service=service, reason="FetchedModel", message=f"Fetched {url} into the model cache")
    return service.pk


def fetch_policy() -> FetchPolicy:
    """What a user's source may reach (docs/security.md, Sources, limits and credentials)."""
    return FetchPolicy.build(
        file_roots=settings.FERRY_FILE_SOURCE_ROOTS, forbidden_dirs=[settings.VAR_DIR],
        allowed_networks=settings.FERRY_FETCH_ALLOWED_NETWORKS, max_bytes=settings.FERRY_FETCH_MAX_BYTES,
        timeout_seconds=settings.FERRY_FETCH_TIMEOUT_SECONDS)


def _fetch_row(version: Version, url: str) -> ModelFetch:
    fetch = ModelFetch.objects.filter(version=version, url=url).first()
    if fetch is not None:
        return fetch
    try:
        with transaction.atomic():
            fetch = ModelFetch.objects.create(version=version, url=url, requested_at=timezone.now())
    except IntegrityError:  # asked for at the same moment by another reconcile
        return ModelFetch.objects.get(version=version, url=url)
    return _queued(fetch)


def _requeue(fetch: ModelFetch) -> ModelFetch:
    ModelFetch.objects.filter(pk=fetch.pk).update(state=ModelFetchState.PENDING, directory="", message="",
                                                  requested_at=timezone.now())
    return _queued(fetch)


def _queued(fetch: ModelFetch) -> ModelFetch:
    """Queued by name: the task lives with the other tasks (deployer/tasks.py), which import the reconcile.
    Under CELERY_TASK_ALWAYS_EAGER the fetch has run when this returns, so the row is read again."""
    current_app.signature(FETCH_TASK, args=(fetch.pk,)).delay()
    return ModelFetch.objects.get(pk=fetch.pk)


def _lost_after() -> timedelta:
    return timedelta(seconds=settings.FERRY_FETCH_TIMEOUT_SECONDS) + LOST_AFTER


def _s3_credentials(service: Service):
    """The project's own access key; else the platform's only for the projects an admin lists; else none at all
    (a public bucket still works), so one project's service never reads a bucket with credentials not its own."""
    own = project_storage_credentials(service.project)
    if own is not None:
        return own
    return None if service.project.name in settings.FERRY_S3_PLATFORM_CREDENTIALS_PROJECTS else ANONYMOUS


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
