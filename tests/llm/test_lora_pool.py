"""An adapter pool (docs/mesh.md, LoRA adapters): one vLLM engine serving a base model, and models in the pool
that are LoRA adapters of it, loaded into the engine on their first request and unloaded least recently used
first when its slots are full; each called by its own name in the OpenAI `model` field, with the openai client,
through the gateway, with its own token."""

from __future__ import annotations

import subprocess
import time

import openai
import pytest

from .conftest import ENGINE_TIMEOUT, ROOT, wait_routed

POOL = "lorapool"


def make_adapter(engine_python: str, base, target, seed: int) -> str:
    done = subprocess.run([engine_python, "-m", "processors.tiny_llm", str(target), "--lora-of", str(base),
                           "--seed", str(seed)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return target.as_uri() + "/"


def placements(platform, name: str) -> list[dict]:
    answer = platform.call("GET", f"/services/local/{name}/placements")
    assert answer.status_code == 200, answer.text
    return answer.json()["Placements"]


def ask(platform, name: str, token: str) -> str:
    client = openai.OpenAI(base_url=f"{platform.gateway}/v1", api_key=token, max_retries=0, timeout=300)
    answer = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hello"}],
                                            max_tokens=8, temperature=0)
    return answer.choices[0].message.content


@pytest.fixture(scope="module")
def adapter_pool(platform, tiny_model, engine_python, models_root):
    pool = {"name": POOL, "processor": "vllm", "model_path": tiny_model.as_uri() + "/",
            "processor_params": ["--max-model-len=512"], "metadata": {"type": "ModelPool", "instance": 1, "cpu": 2,
                                                                   "memory": 6000},
            "model_mesh": {"max_adapters": 2, "max_lora_rank": 8}}
    created = platform.call("POST", "/services", json=pool)
    assert created.status_code in (200, 202), created.text
    names = []
    for seed in (1, 2, 3):
        name = f"lora{seed}"
        uri = make_adapter(engine_python, tiny_model, models_root / f"adapter{seed}", seed)
        answer = platform.call("POST", "/services", json={"name": name, "model_path": uri, "metadata": {"pool": POOL}})
        assert answer.status_code in (200, 202), answer.text
        names.append(name)
    platform.wait_for_status(POOL, {"Running"}, ENGINE_TIMEOUT)
    for name in names:
        platform.wait_for_status(name, {"Running"}, 120)
        wait_routed(platform, name)
    yield names
    for name in names:
        platform.call("DELETE", f"/services/local/{name}")
    deadline = time.monotonic() + 120
    while any(platform.call("GET", f"/services/local/{n}").status_code == 200 for n in names):
        assert time.monotonic() < deadline, "the adapters were not deleted"
        time.sleep(1)
    platform.call("DELETE", f"/services/local/{POOL}")  # its engine's memory goes back to the other tests


def test_adapters_load_on_demand_are_called_by_name_and_make_room_for_each_other(platform, adapter_pool):
    first, second, third = adapter_pool
    assert placements(platform, POOL) == []  # nothing loaded before anyone asks
    tokens = {name: platform.token(name) for name in adapter_pool}
    answers = {name: ask(platform, name, tokens[name]) for name in (first, second)}
    loaded = {p["Model"]: p for p in placements(platform, POOL)}
    assert set(loaded) == {first, second} and all(p["State"] == "Loaded" for p in loaded.values()), loaded
    assert loaded[first]["Key"] == f"{first}-v1"
    # The adapters change the engine's answers: two adapters with other weights do not answer alike.
    assert answers[first] != answers[second], answers

    # Only the adapter's own token calls it.
    with pytest.raises(openai.AuthenticationError):
        ask(platform, first, tokens[second])

    # A third adapter in a pool of two slots: the least recently used one makes room.
    ask(platform, second, tokens[second])
    ask(platform, third, tokens[third])
    now = {p["Model"] for p in placements(platform, POOL)}
    assert now == {second, third}, now
    unloaded = [e for e in platform.events(first) if e["Reason"] == "UnloadedModel"]
    assert unloaded and f"{first}-v1" in unloaded[0]["Message"], platform.events(first)[-5:]
    # Asked again, it is loaded again (in place of the one now least recently used), and answers as before.
    assert ask(platform, first, tokens[first]) == answers[first]
