"""The autoscaler loop scaling an LLM service on its engines' waiting queue and on requests in flight, fed by
real Redis hashes written as the gateway's engine scraper writes them (contracts/engine_load.py) and as its
metrics flush writes the per-second counters, with time passed in."""

import pytest
import redis
from django.conf import settings

from contracts.engine_load import EngineLoad, engine_load_key
from contracts.keys import metrics_second_key
from contracts.scaling_records import DECISION_KEY, decision_read
from deployer.autoscaling import AutoscalerLoop
from services.models import Instance, Project, Service
from services.writes import service_create

pytestmark = pytest.mark.django_db
T0 = 1_900_000_000
NAME = "llmscaled"


@pytest.fixture
def store():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    for key in client.scan_iter(f"ferry:metrics:s:local:{NAME}:*"):
        client.delete(key)
    client.delete(engine_load_key("local", NAME), DECISION_KEY.format(cluster="local", service=NAME))


def llm_service(autoscaler: dict, ready: int) -> Service:
    document = {"name": NAME, "processor": "vllm", "model_path": "file:///models/tiny",
                "metadata": {"instance": ready}, "autoscaler": autoscaler}
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
    Service.objects.filter(pk=service.pk).update(autoscaled_instances=ready)
    version = service.versions.get(number=1)
    for index in range(ready):
        Instance.objects.update_or_create(service=service, name=f"{NAME}-{index}",
                                          defaults={"version": version, "ready": True})
    service.refresh_from_db()
    return service


def engines(client, readings: dict[str, EngineLoad]) -> None:
    client.hset(engine_load_key("local", NAME), mapping={name: load.to_json() for name, load in readings.items()})


def test_it_scales_an_llm_service_up_on_the_engines_waiting_queue(store):
    service = llm_service({"min": 1, "max": 6, "scaleStrategies": [{"metricName": "llm[waiting]", "threshold": 4}]},
                          ready=2)
    # 20 waiting over two engines (10 per instance, threshold 4): 5 instances. The third reading is an
    # instance that is not ready: not counted.
    engines(store, {f"{NAME}-0": EngineLoad(running=8, waiting=12, at=T0 - 1),
                    f"{NAME}-1": EngineLoad(running=8, waiting=8, at=T0 - 2),
                    f"{NAME}-9": EngineLoad(waiting=100, at=T0 - 1)})
    changes = AutoscalerLoop(store).tick(now=T0)
    service.refresh_from_db()
    assert service.autoscaled_instances == 5, changes
    record = decision_read(store, "local", NAME)
    assert record["metrics"] == [{"metricName": "llm[waiting]", "value": 10.0}]
    assert "llm[waiting] 10.0 per instance is 250 % of threshold 4 on 2 instances: wants 5" in record["reason"]


def test_a_stale_engine_reading_is_ignored_and_the_decision_says_so(store):
    service = llm_service({"min": 1, "max": 6, "scaleStrategies": [{"metricName": "llm[waiting]", "threshold": 4}]},
                          ready=2)
    engines(store, {f"{NAME}-0": EngineLoad(waiting=2, at=T0 - 1),
                    f"{NAME}-1": EngineLoad(waiting=400, at=T0 - 120)})  # the scraper lost it two minutes ago
    AutoscalerLoop(store).tick(now=T0)
    service.refresh_from_db()
    assert service.autoscaled_instances == 1  # 2 waiting over 2 instances, not the stale 400: one is enough
    reason = decision_read(store, "local", NAME)["reason"]
    assert f"ignored stale engine readings (older than 30 s): {NAME}-1's is 120 s old" in reason


def test_it_scales_on_requests_in_flight_that_long_streams_hold(store):
    service = llm_service({"min": 1, "max": 8, "scaleStrategies": [{"metricName": "concurrency", "threshold": 4}]},
                          ready=1)
    # Twelve streams open the whole time, none finished: no request counted, but 12 in flight every second.
    for second in range(T0 - 40, T0):
        store.hset(metrics_second_key("local", NAME, 1, second), mapping={"concurrency_max": 12})
    AutoscalerLoop(store).tick(now=T0)
    service.refresh_from_db()
    assert service.autoscaled_instances == 3
    assert "concurrency 11.6 per instance is 290 % of threshold 4 on 1 instances: wants 3" in decision_read(
        store, "local", NAME)["reason"]  # 29 of the last 30 s: the current second is still being counted


def test_an_idle_llm_service_scales_to_zero(store):
    service = llm_service({"min": 0, "max": 3, "scaleStrategies": [{"metricName": "llm[waiting]", "threshold": 4}],
                           "behavior": {"onZero": {"scaleDownGracePeriodSeconds": 60}}}, ready=1)
    loop = AutoscalerLoop(store)
    engines(store, {f"{NAME}-0": EngineLoad(waiting=0, at=T0 - 1)})
    loop.tick(now=T0)
    service.refresh_from_db()
    assert service.autoscaled_instances == 1
    engines(store, {f"{NAME}-0": EngineLoad(waiting=0, at=T0 + 74)})
    loop.tick(now=T0 + 75)
    service.refresh_from_db()
    assert service.autoscaled_instances == 0


def test_a_woken_llm_service_is_kept_through_its_long_start(store):
    """At zero the activator raises the service (deployer/activation.py) and the engine takes minutes to start:
    no engine reading, no request counted yet. The loop keeps the woken instance for the grace period instead
    of sending it straight back to zero, and says the queue is not measured yet."""
    from deployer.activation import activate

    service = llm_service({"min": 0, "max": 3, "scaleStrategies": [{"metricName": "llm[waiting]", "threshold": 4}],
                           "behavior": {"onZero": {"scaleDownGracePeriodSeconds": 300}}}, ready=0)
    Service.objects.filter(pk=service.pk).update(autoscaled_instances=0)
    loop = AutoscalerLoop(store)
    loop.tick(now=T0)
    service.refresh_from_db()
    assert service.autoscaled_instances == 0
    assert activate(NAME, "local")  # a request arrived at the gateway, which holds it
    for later in (T0 + 2, T0 + 120, T0 + 290):  # the engine is still loading: nothing ready, nothing measured
        loop.tick(now=later)
        service.refresh_from_db()
        assert service.autoscaled_instances == 1, decision_read(store, "local", NAME)["reason"]
    assert "llm[waiting]: not measured (no ready instance)" in decision_read(store, "local", NAME)["reason"]
