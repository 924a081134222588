"""The OpenAI API through the gateway: /v1/chat/completions, /v1/completions and /v1/embeddings routed by the
body's `model` to the service of that name, with the service's token as `Authorization: Bearer`, the path sent
to the instance unchanged; `GET /v1/models` answered by the gateway from the token. The official `openai` client
is used where it can read what an echo instance answers (models.list, raw responses)."""

from __future__ import annotations

import json

import openai
import pytest

from tests.gateway.conftest import call

def bearer(name: str) -> dict:
    return {"Authorization": f"Bearer token-of-{name}", "Content-Type": "application/json"}


@pytest.fixture
def two_services(routes, echo):
    """Two services, each with one echo instance: the body's `model` picks which."""
    chat, other = routes.unique("chat"), routes.unique("other")
    instances = echo(f"{chat}-0", f"{other}-0")
    routes.put(chat, [(1, 100, [instances.instance(f"{chat}-0")])])
    routes.put(other, [(1, 100, [instances.instance(f"{other}-0")])])
    return chat, other


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
def test_the_body_model_names_the_service_and_the_path_is_kept(gateway, two_services, path):
    chat, other = two_services
    for name in (chat, other):
        status, _, body = call(gateway, path, body=json.dumps({"model": name, "prompt": "hi"}).encode(),
                               headers=bearer(name))
        answer = json.loads(body)
        assert status == 200, body
        assert (answer["instance"], answer["path"]) == (f"{name}-0", path)


def test_another_services_token_does_not_open_a_model(gateway, two_services):
    chat, other = two_services
    status, _, body = call(gateway, "/v1/chat/completions", body=json.dumps({"model": chat}).encode(),
                           headers=bearer(other))
    assert status == 401, body


def test_a_token_of_no_service_is_refused_before_the_body(gateway, two_services):
    status, headers, body = call(gateway, "/v1/chat/completions", body=b'{"model": "x"}',
                                 headers={"Authorization": "Bearer not-a-token"})
    assert status == 401 and headers.get("connection") == "close", body
    status, _, body = call(gateway, "/v1/chat/completions", body=b'{"model": "x"}')
    assert status == 401 and b"Authorization" in body


def test_a_signed_call_is_sent_to_the_eas_path(gateway, two_services):
    chat, _ = two_services
    status, _, body = call(gateway, "/v1/chat/completions", body=json.dumps({"model": chat}).encode(),
                           headers={"Authorization": "EAS some-key:some-signature"})
    assert status == 401 and b"/api/predict/<service>/v1/" in body


@pytest.mark.parametrize(("body", "expected"), [
    (b"not json", b"not JSON"),
    (b"[1, 2]", b"JSON object"),
    (b'{"model": 3}', b'\\"model\\" must be'),
])
def test_a_body_that_names_no_model_is_a_clear_400(gateway, two_services, body, expected):
    chat, _ = two_services
    status, _, answer = call(gateway, "/v1/chat/completions", body=body, headers=bearer(chat))
    assert status == 400 and expected in answer, answer


def test_without_model_the_tokens_own_service_is_called(gateway, two_services):
    chat, _ = two_services
    status, _, body = call(gateway, "/v1/completions", body=b'{"prompt": "hi"}', headers=bearer(chat))
    assert status == 200 and json.loads(body)["instance"] == f"{chat}-0"


def test_an_unknown_model_with_a_valid_token_is_refused_without_saying_what_exists(gateway, two_services):
    chat, _ = two_services
    status, _, body = call(gateway, "/v1/chat/completions", body=b'{"model": "nothing_here"}', headers=bearer(chat))
    assert status == 404 and b"nothing_here" in body


def test_the_openai_client_lists_the_models_its_token_opens(gateway, two_services):
    chat, other = two_services
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=f"token-of-{chat}", max_retries=0)
    assert [model.id for model in client.models.list()] == [chat]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="wrong", max_retries=0).models.list()


def test_the_openai_client_reaches_the_named_service(gateway, two_services):
    chat, _ = two_services
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=f"token-of-{chat}", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model=chat, messages=[{"role": "user", "content": "hi"}])
    answer = json.loads(raw.http_response.content)
    assert (answer["instance"], answer["path"], answer["authorization"]) == (
        f"{chat}-0", "/v1/chat/completions", f"token-of-{chat}")


def test_a_group_name_as_model_serves_a_member(gateway, routes, echo):
    group, member = routes.unique("grp"), routes.unique("member")
    instances = echo(f"{member}-0")
    routes.put(member, [(1, 100, [instances.instance(f"{member}-0")])], group=group, traffic_state="grouping")
    status, _, body = call(gateway, "/v1/chat/completions", body=json.dumps({"model": group}).encode(),
                           headers=bearer(member))
    assert status == 200 and json.loads(body)["instance"] == f"{member}-0", body
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=f"token-of-{member}", max_retries=0)
    assert sorted(model.id for model in client.models.list()) == sorted([member, group])


def test_models_is_listed_only_with_get(gateway, two_services):
    chat, _ = two_services
    status, headers, _ = call(gateway, "/v1/models", body=b"{}", headers=bearer(chat))
    assert status == 405 and headers["allow"] == "GET, HEAD"
