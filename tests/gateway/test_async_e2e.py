"""An asynchronous service end to end: created through the control plane (metadata.type "Async"), run by the
real node agent on Ferry's model server, its route published with its queue, and called with the real
QueueClient through the gateway: the requests put come back from the model in the sink."""

import json

import pytest

from processors.demo import IRIS_SAMPLE, demo_service_files
from services.models import Project
from services.selectors import service_token
from services.writes import service_create

from .conftest import converge
from .test_async_queue import queue
from .test_clients import routed, running

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_an_async_model_service_answers_through_its_queues(local_cluster, demo_models, gateway, eas_python):
    iris = next(f for f in demo_service_files(demo_models) if f["name"] == "demo_iris")
    document = {**iris, "name": "async_iris", "metadata": {**iris.get("metadata", {}), "type": "Async"},
                "queue": {"source": {"max_length": 100}, "sink": {"max_length": 100}}}
    service = converge(service_create(actor=None, project=Project.objects.get(name="default"), document=document),
                       running, what="async_iris Running")
    routed(gateway, service)
    token = service_token(service)
    body = json.dumps({"instances": [IRIS_SAMPLE]})
    put, results, attributes = queue(
        eas_python, gateway, token, {"op": "put", "queue": "async_iris", "data": body, "count": 5},
        {"op": "watch", "queue": "async_iris/sink", "count": 5, "auto_commit": True},
        {"op": "attributes", "queue": "async_iris"})
    assert [json.loads(r["data"]) for r in results] == [{"predictions": [0]}] * 5
    assert sorted(r["tags"]["requestId"] for r in results) == sorted(rid for _, rid in put)
    assert attributes["stream.maxLength"] == "100" and attributes["stream.length"] == "0"
    wrong = queue(eas_python, gateway, "wrong-token", {"op": "put", "queue": "async_iris", "data": body})[0]
    assert wrong["error"][0] == 401
