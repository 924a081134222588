"""The control plane's side of the gateway: routes pushed to Redis, and waking a service from zero."""

import json

import pytest

from deployer.activation import activate
from deployer.models import LocalInstance
from deployer.reconcile import reconcile
from deployer.routing import CHANGED_CHANNEL, ROUTES_KEY
from contracts import sealing
from services.models import Project, Service
from services.selectors import service_token
from services.writes import service_create, service_delete, service_update, version_weights_set

pytestmark = pytest.mark.django_db

SLEEPER = {"name": "sleeper", "processor": "custom",
           "containers": [{"image": "none", "script": "sleep 600", "port": 8000}],
           "metadata": {"rpc": {"keepalive": 7000}}}


def create(document) -> Service:
    return service_create(actor=None, project=Project.objects.get(name="default"), document=document)


def test_it_publishes_each_reconciled_service_with_its_ready_instances(routes):
    changes = routes.pubsub()
    changes.subscribe(CHANGED_CHANNEL)
    service = create(SLEEPER)
    reconcile(service.pk)
    raw = routes.hget(ROUTES_KEY, "sleeper")
    entry = json.loads(raw)
    # The token sealed for the gateway, with its keyed digest: never in plain text (contracts/sealing.py).
    token = service_token(service)
    assert token not in raw and "token" not in entry and entry["timeout_ms"] == 7000
    key = sealing.route_key()
    assert sealing.unseal(key, entry["token_sealed"], "local", "sleeper") == token.encode()
    assert entry["token_digest"] == sealing.digest(key, token.encode()).hex()
    assert entry["versions"] == [{"number": 1, "weight": 100, "instances": []}]  # not ready: not routable

    # As the node agent reports it: ready on a port.
    LocalInstance.objects.filter(service=service).update(state="Running", ready=True, port=41234)
    reconcile(service.pk)
    entry = json.loads(routes.hget(ROUTES_KEY, "sleeper"))
    assert entry["versions"][0]["instances"] == [{"name": "sleeper-v1-0", "address": "127.0.0.1:41234"}]
    messages = [m["data"] for m in iter(lambda: changes.get_message(timeout=1), None) if m["type"] == "message"]
    assert messages.count("sleeper") >= 2


def test_it_publishes_weight_changes_and_removes_deleted_services(routes, django_capture_on_commit_callbacks):
    service = create(SLEEPER)
    new_shape = {"containers": [{"image": "none", "script": "sleep 601", "port": 8000}]}
    service_update(actor=None, service=service, patch=new_shape)
    with django_capture_on_commit_callbacks(execute=True):
        version_weights_set(actor=None, service=service, weights={1: 80, 2: 20})
    entry = json.loads(routes.hget(ROUTES_KEY, "sleeper"))
    assert [(v["number"], v["weight"]) for v in entry["versions"]] == [(1, 80), (2, 20)]

    with django_capture_on_commit_callbacks(execute=True):
        service_delete(actor=None, service=Service.objects.get(pk=service.pk))
    assert routes.hget(ROUTES_KEY, "sleeper") is None


def test_it_wakes_a_service_at_zero_once(routes):
    service = create({**SLEEPER, "autoscaler": {"min": 0, "max": 3,
                                                "scaleStrategies": [{"metricName": "qps", "threshold": 10}]}})
    Service.objects.filter(pk=service.pk).update(autoscaled_instances=0)
    reconcile(service.pk)
    assert not LocalInstance.objects.filter(service=service).exists()

    assert activate("sleeper", "local") is True
    service.refresh_from_db()
    assert service.autoscaled_instances == 1
    assert LocalInstance.objects.filter(service=service, desired="running").count() == 1
    assert service.events.filter(reason="Activated").count() == 1
    assert activate("sleeper", "local") is False  # already has an instance coming: nothing more to do
    assert activate("nobody", "local") is False
