"""Model fetches on a queue of their own (deployer/fetches.py): a reconcile never downloads; it queues
`deployer.fetch_source` on the `fetch` queue and the version waits, so a slow or hanging source cannot hold the
workers that reconcile every other service. Real Redis (the broker), a real HTTP source on loopback, the real
model cache; the fetch task's function is run as the fetcher worker would run the queued message."""

import base64
import json
import os
import shutil
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from config.celery import app
from deployer.locks import reconcile_lock
from deployer.models import LocalInstance, ModelFetch, ModelFetchState
from deployer.reconcile import reconcile
from deployer.tasks import fetch_source
from services.models import Project
from services.writes import service_create
from tests.security.test_sources import loopback_source


@pytest.fixture
def source(settings):
    """A real HTTP server on loopback serving /model.onnx (404 for anything else): the source tests' own."""
    settings.FERRY_FETCH_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with loopback_source() as httpd:
        yield httpd


@pytest.fixture
def broker():
    """Tasks go to the real broker (Redis) instead of running inline; what this test queued is removed after."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = {queue: set(client.lrange(queue, 0, -1)) for queue in ("fetch", "celery")}
    app.conf.task_always_eager = False
    try:
        yield client
    finally:
        app.conf.task_always_eager = True
        for queue, kept in before.items():
            for raw in client.lrange(queue, 0, -1):
                if raw not in kept:
                    client.lrem(queue, 0, raw)


def queued(client, queue: str, task: str) -> list[list]:
    """The arguments of every `task` message waiting in `queue`."""
    found = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == task:
            found.append(json.loads(base64.b64decode(message["body"]))[0])
    return found


def sklearn_service(name: str, model_url: str):
    document = {"name": name, "processor": "sklearn", "model_path": model_url, "metadata": {"instance": 1}}
    return service_create(actor=None, project=Project.objects.get(name="default"), document=document)


@pytest.mark.django_db
def test_a_reconcile_queues_the_fetch_and_does_not_download(source, broker):
    service = sklearn_service("fetch_queued", f"{source.url}/model.onnx")
    reconcile(service.pk)

    service.refresh_from_db()
    fetch = ModelFetch.objects.get(version__service=service)
    assert source.seen == []  # the reconcile downloaded nothing itself
    assert (fetch.state, fetch.url) == (ModelFetchState.PENDING, f"{source.url}/model.onnx")
    assert queued(broker, "fetch", "deployer.fetch_source") == [[fetch.pk]]
    assert queued(broker, "celery", "deployer.fetch_source") == []  # never on the reconcile workers' queue
    assert (service.phase, service.status_reason) == ("Creating", "FetchingModel")
    assert f"fetching {source.url}/model.onnx for version 1" in service.status_message
    assert service.next_reconcile_at is not None
    assert not LocalInstance.objects.filter(service=service).exists()

    reconcile(service.pk)  # a second look while it is pending queues nothing more
    assert queued(broker, "fetch", "deployer.fetch_source") == [[fetch.pk]]


@pytest.mark.django_db
def test_the_fetcher_downloads_then_asks_for_the_reconcile_that_launches(source, broker):
    service = sklearn_service("fetch_then_launch", f"{source.url}/model.onnx")
    reconcile(service.pk)
    fetch = ModelFetch.objects.get(version__service=service)

    fetch_source(fetch.pk)  # what the fetcher worker runs for the queued message

    fetch.refresh_from_db()
    assert fetch.state == ModelFetchState.DONE and source.seen == ["/model.onnx"]
    assert os.listdir(fetch.directory) == ["model.onnx"]
    assert queued(broker, "celery", "deployer.reconcile_service") == [[service.pk]]
    reconcile(service.pk)
    row = LocalInstance.objects.get(service=service)
    assert any(fetch.directory in part for part in row.launch["argv"] + list(row.launch["env"].values()))
    reasons = list(service.events.order_by("pk").values_list("reason", flat=True))
    assert reasons.index("FetchingModel") < reasons.index("FetchedModel")

    fetch_source(fetch.pk)  # a message delivered twice does nothing the second time
    assert source.seen == ["/model.onnx"]


@pytest.mark.django_db
def test_a_failed_fetch_fails_the_version_once_and_the_next_reconcile_fetches_again(source, broker):
    service = sklearn_service("fetch_fails", f"{source.url}/missing.onnx")
    reconcile(service.pk)
    fetch_source(ModelFetch.objects.get(version__service=service).pk)
    reconcile(service.pk)

    service.refresh_from_db()
    assert (service.phase, service.status_reason) == ("Failed", "ModelFetchFailed")
    assert "404" in service.status_message and service.next_reconcile_at is None
    assert not ModelFetch.objects.filter(version__service=service).exists()

    reconcile(service.pk)  # what a restart or an update runs: the source may have been fixed since
    again = ModelFetch.objects.get(version__service=service)
    assert again.state == ModelFetchState.PENDING
    assert [again.pk] in queued(broker, "fetch", "deployer.fetch_source")


@pytest.mark.django_db
def test_a_fetch_lost_with_its_worker_or_a_cleared_cache_is_queued_again(source, broker):
    service = sklearn_service("fetch_lost", f"{source.url}/model.onnx")
    reconcile(service.pk)
    fetch = ModelFetch.objects.get(version__service=service)
    long_ago = timezone.now() - timedelta(seconds=settings.FERRY_FETCH_TIMEOUT_SECONDS + 600)
    ModelFetch.objects.filter(pk=fetch.pk).update(requested_at=long_ago)
    reconcile(service.pk)
    assert queued(broker, "fetch", "deployer.fetch_source") == [[fetch.pk], [fetch.pk]]

    fetch_source(fetch.pk)
    fetch.refresh_from_db()
    shutil.rmtree(fetch.directory)
    LocalInstance.objects.filter(service=service).delete()  # every instance ended: the next launch needs files
    reconcile(service.pk)
    fetch.refresh_from_db()
    assert fetch.state == ModelFetchState.PENDING
    assert queued(broker, "fetch", "deployer.fetch_source").count([fetch.pk]) == 3


@pytest.mark.django_db
def test_a_version_is_fetched_once_for_all_its_launches(source):
    """Inline (as the rest of the suite runs tasks): instances started later, as when waking from zero, use the
    files the version was first launched with and do not download again."""
    service = sklearn_service("fetch_once", f"{source.url}/model.onnx")
    reconcile(service.pk)
    first = LocalInstance.objects.get(service=service)
    LocalInstance.objects.filter(service=service).delete()
    reconcile(service.pk)
    second = LocalInstance.objects.get(service=service)
    assert source.seen == ["/model.onnx"] and ModelFetch.objects.filter(version__service=service).count() == 1
    assert first.launch["argv"] == second.launch["argv"]


@pytest.mark.django_db
def test_a_reconcile_lock_is_not_taken_twice_by_one_process():
    """Advisory locks are re-entrant within a PostgreSQL session; a task run inline inside a reconcile (the
    fetch, then its reconcile) must not start a second reconcile of the same service inside the first."""
    with reconcile_lock(7) as outer, reconcile_lock(7) as inner, reconcile_lock(8) as other:
        assert (outer, inner, other) == (True, False, True)
    with reconcile_lock(7) as after:
        assert after is True
