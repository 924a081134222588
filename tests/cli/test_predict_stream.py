"""`ferry predict --stream` through a real gateway to a real streaming upstream (a custom container answering an
OpenAI-style chat completion as server-sent events, each token held until the test releases it): the tokens
are printed as they arrive, before the rest of the answer exists."""

import json

import pytest

from services.models import Service
from tests.streaming.kit import TOKENS, Collected, gate, gateway, release, sse_service  # noqa: F401 -- fixtures

from .conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
CHAT = json.dumps({"model": "sse", "messages": [{"role": "user", "content": "Say hello"}]})


def answered(ferry, gateway, *args):
    """Once the gateway routes the service: the non-streamed answer (proof the route is there)."""
    def ok():
        result = ferry("predict", "sse", "--path", "v1/chat/completions", "--endpoint", gateway.url, "-d",
                       json.dumps({"messages": []}), "-o", "json")
        return result if result.returncode == 0 else None
    return eventually(ok, timeout=60, what="the gateway to route sse")


def test_predict_stream_prints_the_chat_tokens_as_they_arrive(ferry, sweeper, gateway, gate):
    ferry.ok("create", ferry.file("sse.json", sse_service("sse", gate)), "--timeout", "90")
    whole = answered(ferry, gateway)
    assert json.loads(whole.stdout)["choices"][0]["message"]["content"] == "".join(TOKENS)

    process = ferry.popen("predict", "sse", "--path", "v1/chat/completions", "--stream", "--endpoint", gateway.url,
                          "-d", CHAT)
    out = Collected(process.stdout)
    try:
        assert out.wait_for("Hello") == "Hello"  # the first token, printed while the upstream holds the rest
        release(gate, 1)
        assert out.wait_for(" from") == "Hello from"
        release(gate, *range(2, len(TOKENS)))
        assert process.wait(30) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert out.join() == "".join(TOKENS) + "\n"
    assert Service.objects.get(name="sse").phase == "Running"


def test_predict_stream_json_prints_each_event(ferry, sweeper, gateway, gate):
    ferry.ok("create", ferry.file("sse.json", sse_service("sse", gate)), "--timeout", "90")
    answered(ferry, gateway)
    release(gate, *range(1, len(TOKENS)))
    result = ferry("predict", "sse", "--path", "v1/completions", "--stream", "--endpoint", gateway.url,
                   "-d", json.dumps({"model": "sse", "prompt": "Say"}), "-o", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["choices"][0]["text"] for event in events] == TOKENS
