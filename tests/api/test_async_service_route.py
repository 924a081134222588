"""An asynchronous service file (metadata.type "Async", docs/async.md) is created and its route entry tells the
gateway so, with the queue settings of the file; a synchronous one's entry has no queue."""

import pytest

from contracts.routes import RouteEntry, RouteQueue
from deployer.routing import route_entry
from services.models import Project
from services.writes import service_create

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_the_route_of_an_async_service_carries_its_queue():
    document = {"name": "asyncq", "processor": "sklearn", "model_path": "/models/iris.joblib",
                "metadata": {"instance": 0, "type": "Async"},
                "queue": {"source": {"max_length": 20, "max_payload_size_kb": 4}, "sink": {"max_length": 30}}}
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
    entry = route_entry(service, "token")
    assert entry.queue == RouteQueue(max_length=20, max_payload_bytes=4096, sink_max_length=30)
    assert RouteEntry.from_json(entry.to_json()).queue == entry.queue  # as the gateway reads it
    plain = service_create(actor=None, project=Project.objects.get(name="default"),
                           document={k: v for k, v in {**document, "name": "syncq", "metadata": {"instance": 0}}.items()
                                     if k != "queue"})
    assert route_entry(plain, "token").queue is None
