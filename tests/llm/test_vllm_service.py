"""A real vLLM service on the local cluster, end to end: deployed through the REST API of a `make run` platform,
started by the node agent in its sandbox, called through the gateway with the official OpenAI client as EAS
invokes LLM services (/api/predict/<service>/v1/...), with the service token as the API key.

One engine (conftest's `chat`) serves the whole group: its first start loads torch and vLLM and compiles the
model (a minute or more on a busy 2-core machine)."""

from __future__ import annotations


import openai
import pytest
import requests

from contracts.engine_load import parse_metrics

from .conftest import SERVICE, chat_file, engine_port, engine_still_running, metric


@pytest.fixture
def client(platform, chat) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.gateway}/api/predict/{SERVICE}/v1", api_key=chat, max_retries=0,
                         timeout=300)


def test_a_chat_completion_through_the_gateway_with_the_openai_client(client):
    answer = client.chat.completions.create(model=SERVICE, max_tokens=16,
                                            messages=[{"role": "system", "content": "You are terse."},
                                                      {"role": "user", "content": "Where do services run?"}])
    assert answer.model == SERVICE and answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 16 and answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content  # random weights: some text, never a refusal or an error


def test_a_completion_through_the_gateway_with_the_openai_client(client):
    answer = client.completions.create(model=SERVICE, prompt="Ferry deploys", max_tokens=8, temperature=0)
    again = client.completions.create(model=SERVICE, prompt="Ferry deploys", max_tokens=8, temperature=0)
    assert answer.usage.completion_tokens == 8 and answer.choices[0].text
    assert again.choices[0].text == answer.choices[0].text  # greedy decoding of fixed weights


def test_the_openai_api_of_the_gateway_routes_by_model(platform, chat):
    """base_url=<gateway>/v1, as any OpenAI client is pointed at a provider: the body's `model` names the
    service, and /v1/models lists what the token opens."""
    client = openai.OpenAI(base_url=f"{platform.gateway}/v1", api_key=chat, max_retries=0, timeout=300)
    assert [model.id for model in client.models.list()] == [SERVICE]
    answer = client.chat.completions.create(model=SERVICE, max_tokens=8,
                                            messages=[{"role": "user", "content": "Hello"}])
    assert answer.model == SERVICE and answer.usage.completion_tokens == 8
    chunks = list(client.completions.create(model=SERVICE, prompt="Ferry", max_tokens=12, stream=True,
                                            extra_body={"ignore_eos": True}))
    assert sum(1 for chunk in chunks if chunk.choices and chunk.choices[0].text) >= 10
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no_such_service", max_tokens=2,
                                       messages=[{"role": "user", "content": "Hello"}])


def test_a_wrong_token_is_refused_by_the_gateway(platform, chat):
    wrong = openai.OpenAI(base_url=f"{platform.gateway}/api/predict/{SERVICE}/v1", api_key="not-the-token",
                          max_retries=0, timeout=60)
    with pytest.raises(openai.AuthenticationError):
        wrong.completions.create(model=SERVICE, prompt="hello", max_tokens=2)


def test_the_engines_metrics_are_read_by_the_gateways_parser(platform, client):
    client.completions.create(model=SERVICE, prompt="metrics", max_tokens=4)
    text = requests.get(f"http://127.0.0.1:{engine_port(platform, SERVICE)}/metrics", timeout=30).text
    assert metric(text, "vllm:num_requests_running") and metric(text, "vllm:num_requests_waiting")
    load = parse_metrics(text)
    assert (load.running, load.waiting) == (0, 0)  # nothing in flight now
    assert load.prompt_tokens > 0 and load.generation_tokens >= 4


def test_the_install_and_start_are_told_as_events_and_the_sandbox_in_the_log(platform, chat):
    reasons = [event["Reason"] for event in platform.events(SERVICE)]
    assert {"AppliedLimits", "InstanceReady", "BecameRunning"} <= set(reasons), reasons
    log = platform.logs(SERVICE)
    assert "sandbox:" in log or "Application startup complete" in log, log[-3000:]


def test_the_first_start_compiled_into_the_services_shared_cache(platform, chat):
    """What the engine compiles lands in the service's cache under var/engines/cache (the next start of any of
    its instances reads it), not in the instance's own directory."""
    caches = list((platform.var_dir / "engines" / "cache").iterdir())  # one per service that ran an engine
    assert caches
    assert any(path.is_file() for cache in caches for path in cache.rglob("*")), "nothing was cached"


def test_a_stream_through_the_gateway_sends_its_first_chunk_while_the_engine_still_generates(platform, client):
    """The gateway forwards the engine's server-sent events as they come: when the first chunk arrives, the
    request is still running in the engine (its /metrics say so), long before the last token."""
    port = engine_port(platform, SERVICE)
    stream = client.chat.completions.create(model=SERVICE, max_tokens=400, stream=True,
                                            messages=[{"role": "user", "content": "Tell a long story."}],
                                            extra_body={"ignore_eos": True})
    running_at_first = None
    chunks = 0
    for chunk in stream:
        if running_at_first is None and chunk.choices and chunk.choices[0].delta.content:
            running_at_first = engine_still_running(port)
        chunks += 1
    assert chunks > 100, chunks
    assert running_at_first, "the first chunk came only once the engine had finished: the stream was buffered"


@pytest.mark.parametrize(("change", "reason", "words"), [
    ({"name": "chat_bad_params", "processor_params": ["--max-model-len=512", "--host=0.0.0.0"]},
     "InvalidProcessorParams", "processor_params[1]"),
    ({"name": "chat_sglang", "processor": "sglang"}, "ProcessorNotSupportedLocally", "Kubernetes"),
])
def test_what_the_local_cluster_cannot_run_is_refused_through_the_api(platform, tiny_model, change, reason, words):
    created = platform.call("POST", "/services", json=chat_file(tiny_model) | change)
    assert created.status_code in (200, 202), created.text
    service = platform.wait_for_status(change["name"], {"Failed"}, 120)
    assert words in service["Message"], service
    assert reason in {event["Reason"] for event in platform.events(change["name"])}
