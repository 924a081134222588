"""An LLM service scaled to zero is woken by the first request: the gateway's activator holds the OpenAI call
through the engine's long start (per route, FERRY_LLM_ACTIVATION_TIMEOUT_SECONDS, not the gateway's default
seconds), and the caller gets its answer. Runs after the group's other modules: a second engine on the same
platform, which the test sends to zero and wakes."""

from __future__ import annotations

import time

import openai

from .conftest import ENGINE_TIMEOUT, chat_file, wait_routed

SLEEPY = "sleepy"
# Knative's shortest windows (as tests/e2e/test_autoscaling.py): an idle service reaches zero in seconds.
KPA = {"autoscaling.knative.dev/target": "1", "autoscaling.knative.dev/target-utilization-percentage": "100",
       "autoscaling.knative.dev/window": "6s", "autoscaling.knative.dev/scale-to-zero-grace-period": "6s"}


def instances(platform, name: str) -> list[dict]:
    answer = platform.call("GET", f"/services/local/{name}/instances")
    assert answer.status_code == 200, answer.text
    return answer.json()["Instances"]


def test_a_request_to_an_llm_service_at_zero_is_held_through_the_engines_start(platform, tiny_model, chat):
    document = chat_file(tiny_model, name=SLEEPY, autoscaler={"min": 0, "max": 1, "kpa": KPA})
    created = platform.call("POST", "/services", json=document)
    assert created.status_code in (200, 202), created.text
    platform.wait_for_status(SLEEPY, {"Running"}, ENGINE_TIMEOUT)
    wait_routed(platform, SLEEPY)
    token = platform.token(SLEEPY)

    deadline = time.monotonic() + 300
    while instances(platform, SLEEPY):  # idle: the autoscaler takes it to zero
        assert time.monotonic() < deadline, f"{SLEEPY} did not scale to zero: {platform.events(SLEEPY)[-5:]}"
        time.sleep(1)
    assert any(e["Reason"] == "Scaled" and "-> 0" in e["Message"] for e in platform.events(SLEEPY))

    client = openai.OpenAI(base_url=f"{platform.gateway}/v1", api_key=token, max_retries=0, timeout=ENGINE_TIMEOUT)
    began = time.monotonic()
    answer = client.chat.completions.create(model=SLEEPY, max_tokens=8, messages=[{"role": "user", "content": "Hi"}])
    print(f"\nfrom zero to the first answer of an LLM service: {time.monotonic() - began:.1f} s")
    assert answer.model == SLEEPY and answer.usage.completion_tokens == 8
    assert any(e["Reason"] == "Activated" for e in platform.events(SLEEPY)), platform.events(SLEEPY)[-8:]
