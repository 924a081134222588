"""The autoscaler loop scales an asynchronous service (docs/async.md) on its input queue's backlog
(`queue[backlog]`, as EAS does), to zero once the queue is empty and back when entries wait: real Redis and
database, the queue filled as the gateway fills it, time passed in (`tick(now=...)`)."""

import pytest
import redis
from django.conf import settings

from contracts.keys import queue_key
from contracts.scaling_records import DECISION_KEY
from deployer.autoscaling import AutoscalerLoop
from services.models import Project, Service
from services.writes import service_create

pytestmark = pytest.mark.django_db
T0 = 1_900_000_000
NAME = "scaled_async"
QUEUE = queue_key("local", NAME)


@pytest.fixture
def store():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(QUEUE)
    yield client
    client.delete(QUEUE, DECISION_KEY.format(cluster="local", service=NAME))


def create() -> Service:
    document = {"name": NAME, "processor": "custom", "metadata": {"type": "Async"},
                "containers": [{"image": "none", "script": "sleep 600", "port": 8000}],
                "autoscaler": {"min": 0, "max": 5, "scaleStrategies": [{"metricName": "queue[backlog]",
                                                                        "threshold": 10}],
                               "behavior": {"onZero": {"scaleDownGracePeriodSeconds": 60},
                                            "scaleDown": {"stabilizationWindowSeconds": 0}}}}
    return service_create(actor=None, project=Project.objects.get(name="default"), document=document)


def backlog(client, count: int) -> None:
    for _ in range(count):
        index = client.incr(QUEUE + ":seq")
        client.xadd(QUEUE, {"data": b"x", "tags": b"{}", "rid": b"r"}, id=f"0-{index}")


def scaled(service: Service) -> int | None:
    service.refresh_from_db()
    return service.autoscaled_instances


def test_it_scales_on_the_backlog_to_zero_and_back(store):
    service = create()
    Service.objects.filter(pk=service.pk).update(phase="Running")  # it ran (a first start is held apart)
    loop = AutoscalerLoop(store)
    backlog(store, 45)
    loop.tick(now=T0)
    assert scaled(service) == 5  # 45 waiting / 10 per instance on 1 -> 5
    assert "queue[backlog]" in service.events.get(reason="Scaled").message
    store.delete(QUEUE)  # all answered
    loop.tick(now=T0 + 30)  # idle, within the grace: the backlog went, the count follows it down
    assert scaled(service) == 1
    loop.tick(now=T0 + 100)
    assert scaled(service) == 0  # empty for longer than the grace
    loop.tick(now=T0 + 102)
    assert scaled(service) == 0  # at zero with nothing waiting: stays
    backlog(store, 3)  # entries put while at zero wake it
    loop.tick(now=T0 + 104)
    assert scaled(service) == 1


def test_a_synchronous_service_is_refused_queue_backlog_on_the_local_cluster():
    from services.errors import InvalidRequest

    document = {"name": "sync_backlog", "processor": "custom",
                "containers": [{"image": "none", "script": "sleep 600", "port": 8000}],
                "autoscaler": {"min": 1, "max": 2, "scaleStrategies": [{"metricName": "queue[backlog]",
                                                                        "threshold": 10}]}}
    with pytest.raises(InvalidRequest, match="asynchronous services only"):
        service_create(actor=None, project=Project.objects.get(name="default"), document=document)


def test_a_deleted_service_takes_its_queues_with_it(store, django_capture_on_commit_callbacks):
    from services.writes import service_delete

    service = create()
    sink = queue_key("local", NAME, sink=True)
    backlog(store, 2)
    store.xadd(sink, {"data": b"r"}, id="0-1")
    with django_capture_on_commit_callbacks(execute=True):
        service_delete(actor=None, service=service)
    assert not Service.objects.filter(name=NAME).exists()
    assert store.exists(QUEUE, sink, QUEUE + ":seq") == 0
