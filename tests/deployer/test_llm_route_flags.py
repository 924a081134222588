"""The route entry of an LLM service (processor vllm or sglang): flagged `llm`, so the gateway scrapes its engines
and routes by their load, and with its own activation deadline (an engine starts in minutes), which the gateway
reads back as published and the control plane keeps a wake-up for."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from contracts.routes import RouteEntry
from deployer.reconcile import _follow_activation
from deployer.routing import route_entry
from services.activations import Activation, activation_failed
from services.models import Project, Service
from services.writes import service_create

pytestmark = pytest.mark.django_db
KEY = b"k" * 32

CHAT = {"name": "chat", "processor": "vllm", "model_path": "oss://models/tiny/",
        "processor_params": ["--max-model-len=512"], "metadata": {"instance": 1, "cpu": 2, "memory": 6000}}
IRIS = {"name": "iris", "processor": "sklearn", "model_path": "oss://models/iris.joblib", "metadata": {"instance": 1}}


def create(document) -> Service:
    return service_create(actor=None, project=Project.objects.get(name="default"), document=document)


def test_an_llm_service_is_flagged_with_the_llm_activation_deadline():
    entry = route_entry(create(CHAT), "token", KEY)
    assert entry.llm is True and entry.activation_timeout_ms == 900_000  # FERRY_LLM_ACTIVATION_TIMEOUT_SECONDS
    assert RouteEntry.from_json(entry.to_json()) == entry
    with override_settings(FERRY_LLM_ACTIVATION_TIMEOUT_SECONDS=1200):
        assert route_entry(Service.objects.get(name="chat"), "token", KEY).activation_timeout_ms == 1_200_000


def test_other_services_keep_the_gateways_deadline_and_least_outstanding():
    entry = route_entry(create(IRIS), "token", KEY)
    assert entry.llm is False and entry.activation_timeout_ms == 0
    assert RouteEntry.from_json(entry.to_json()) == entry


@pytest.mark.parametrize(("document", "started_ago", "failed"), [
    (CHAT, 400, False),  # past FERRY_ACTIVATION_DEADLINE_SECONDS (300), within the LLM deadline (900)
    (CHAT, 1000, True),
    (IRIS, 400, True),
])
def test_the_control_plane_keeps_an_llm_wake_up_as_long_as_the_gateway_holds_its_requests(document, started_ago,
                                                                                           failed):
    service = create(document)
    began = timezone.now() - timedelta(seconds=started_ago)
    service.activation = Activation.begin(generation=service.generation, now=began).to_json()
    service.save(update_fields=["activation"])
    _follow_activation(service, observed=[])
    service.refresh_from_db()
    assert activation_failed(service.activation, service.generation) is failed
