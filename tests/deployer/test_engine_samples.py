"""The LLM engines' counters turned into per-second figures (deployer/engine_samples.py): the pure difference
of two readings, and the sampler reading the engine hash and writing the metrics hashes in real Redis."""

import pytest
import redis
from django.conf import settings

from contracts.engine_load import EngineLoad, engine_load_key
from contracts.keys import metrics_minute_key, metrics_second_key
from deployer.autoscaling import AutoscalerLoop
from deployer.engine_samples import engine_delta
from services.models import Instance, Project
from services.writes import service_create

T0 = 1_900_000_000
NAME = "tokens"


def reading(at, tokens=0.0, tpot=(0.0, 0.0), ttft=(0.0, 0.0), prompt=0.0) -> EngineLoad:
    return EngineLoad(generation_tokens=tokens, prompt_tokens=prompt, tpot_sum=tpot[0], tpot_count=tpot[1],
                      ttft_sum=ttft[0], ttft_count=ttft[1], at=at)


def test_the_difference_of_two_readings_in_milliseconds_at_the_newer_second():
    delta = engine_delta(reading(T0, tokens=100, tpot=(2.0, 99), ttft=(0.5, 1)),
                         reading(T0 + 2.4, tokens=160, tpot=(3.2, 159), ttft=(0.9, 3), prompt=30), now=T0 + 3)
    assert delta.second == T0 + 2
    assert delta.fields == pytest.approx({"engine_generation_tokens": 60, "engine_prompt_tokens": 30,
                                          "engine_tpot_ms_sum": 1200, "engine_tpot_count": 60,
                                          "engine_ttft_ms_sum": 400, "engine_ttft_count": 2})


def test_nothing_to_add_without_a_baseline_a_new_reading_an_engine_restart_or_freshness():
    first = reading(T0, tokens=100)
    assert engine_delta(None, first, now=T0) is None  # the first reading is only a baseline
    assert engine_delta(first, first, now=T0 + 1) is None  # the same scrape read twice
    assert engine_delta(first, reading(T0 + 2, tokens=5), now=T0 + 2) is None  # restarted: counters went down
    assert engine_delta(first, reading(T0 + 2, tokens=150), now=T0 + 100) is None  # stale
    assert engine_delta(first, reading(T0 + 2, tokens=100), now=T0 + 2) is None  # idle: nothing to add


@pytest.fixture
def store():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    for key in [*client.scan_iter(f"ferry:metrics:*:local:{NAME}:*"), engine_load_key("local", NAME)]:
        client.delete(key)


@pytest.mark.django_db
def test_the_loop_samples_each_llm_instance_into_its_versions_metrics_hashes(store):
    service = service_create(actor=None, project=Project.objects.get(name="default"),
                             document={"name": NAME, "processor": "vllm", "model_path": "file:///models/tiny"})
    Instance.objects.create(service=service, version=service.versions.get(number=1), name=f"{NAME}-a", ready=True)
    loop = AutoscalerLoop(store)
    key = engine_load_key("local", NAME)
    store.hset(key, f"{NAME}-a", reading(T0, tokens=1000, tpot=(10.0, 990)).to_json())
    loop.tick(now=T0 + 1)
    assert not store.exists(metrics_second_key("local", NAME, 1, T0))  # a baseline only
    store.hset(key, f"{NAME}-a", reading(T0 + 2, tokens=1050, tpot=(10.5, 1040), ttft=(0.2, 2)).to_json())
    store.hset(key, f"{NAME}-gone", reading(T0 + 2, tokens=5).to_json())  # no such instance: not attributed
    loop.tick(now=T0 + 3)
    written = {k.decode(): float(v) for k, v in store.hgetall(metrics_second_key("local", NAME, 1, T0 + 2)).items()}
    assert written == pytest.approx({"engine_generation_tokens": 50, "engine_tpot_ms_sum": 500,
                                     "engine_tpot_count": 50, "engine_ttft_ms_sum": 200, "engine_ttft_count": 2})
    minute = store.hgetall(metrics_minute_key("local", NAME, 1, T0 + 2))
    assert float(minute[b"engine_generation_tokens"]) == 50
    assert 0 < store.ttl(metrics_second_key("local", NAME, 1, T0 + 2)) <= 3600
    loop.tick(now=T0 + 5)  # the same reading again adds nothing
    assert float(store.hget(metrics_second_key("local", NAME, 1, T0 + 2), "engine_generation_tokens")) == 50
