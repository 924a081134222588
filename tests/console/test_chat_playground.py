"""The invoke tab's chat playground in a real browser (Debian's headless chromium): a conversation is relayed by
the console through a real gateway to a real streaming upstream (a custom container answering an OpenAI chat
completion as server-sent events, each token held until the test releases it), and the tokens appear on the
page one by one, each before the next exists. Also the relay's refusals, and that the token never reaches
the page."""

import json

import pytest
import requests
from playwright.sync_api import expect

from services.models import Project
from services.selectors import service_token
from services.writes import service_create
from tests.agent.kit import wait_for
from tests.streaming.kit import TOKENS, gate, gateway, release, sse_service  # noqa: F401 -- fixtures

from .conftest import log_in, screenshot
from .test_browser import developer

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def routed(gateway, service) -> None:
    """The gateway answers the service (a whole, unstreamed completion)."""
    def answered():
        try:
            answer = requests.post(f"{gateway.url}/api/predict/{service.name}/v1/chat/completions",
                                   json={"messages": []}, headers={"Authorization": service_token(service)},
                                   timeout=10)
        except requests.RequestException:
            return False
        return answer.status_code == 200
    wait_for(answered, timeout=90, what=f"the gateway to route {service.name}")


def test_the_chat_shows_the_tokens_as_they_arrive(browser_page, reconciler, gateway, gate):
    page = browser_page
    log_in(page, *developer())
    service = service_create(actor=None, project=Project.objects.get(name="default"),
                             document=sse_service("chat", gate))
    routed(gateway, service)

    page.goto("/services/local/chat/invoke/")
    assert service_token(service) not in page.content()
    page.get_by_label("Message").fill("Say hello")
    page.get_by_role("button", name="Send", exact=True).click()
    answer = page.locator("#chat-log .chat-assistant .chat-text")
    expect(page.locator("#chat-log .chat-user .chat-text")).to_have_text("Say hello")
    # The upstream holds every token after the first until released: what shows is what arrived so far.
    expect(answer).to_have_text("Hello")
    expect(page.locator("#chat-status")).to_have_text("Streaming…")
    release(gate, 1)
    expect(answer).to_have_text("Hello from")
    release(gate, *range(2, len(TOKENS)))
    expect(answer).to_have_text("".join(TOKENS))
    expect(page.locator("#chat-status")).to_contain_text(f"Done: {len(TOKENS)} chunks")
    screenshot(page, "chat-playground.png")
    assert service_token(service) not in page.content()


def test_the_relay_refuses_what_is_not_a_conversation_and_viewers(client_for, gateway, gate):
    from services.models import Service
    from services.writes import service_create as create

    owner, viewer = client_for("developer"), client_for("viewer")
    create(actor=None, project=Project.objects.get(name="default"), document=sse_service("chat", gate))
    url = "/services/local/chat/actions/chat/"
    refused = owner.post(url, data=json.dumps({"messages": [{"role": "robot", "content": "hi"}]}),
                         content_type="application/json")
    assert refused.status_code == 400
    assert "messages[0]: needs a role (system, user, assistant)" in refused.json()["error"]["message"]
    assert owner.post(url, data="nope", content_type="application/json").status_code == 400
    assert viewer.post(url, data=json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
                       content_type="application/json").status_code == 403
    assert Service.objects.filter(name="chat").exists()


@pytest.fixture
def client_for(db):
    from django.contrib.auth import get_user_model
    from django.test import Client

    from services.models import ProjectMembership

    def make(role: str) -> Client:
        user = get_user_model().objects.create_user(f"user_{role}", password="a-long-test-password")
        ProjectMembership.objects.create(user=user, project=Project.objects.get(name="default"), role=role)
        client = Client()
        client.force_login(user)
        return client
    return make
