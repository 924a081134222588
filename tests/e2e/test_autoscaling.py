"""Elastic scaling end to end, with every part real and running as `make run` runs it: the node agent and its
model servers, the gateway (whose per-second metrics feed the autoscaler), `manage.py runautoscaler`, and a
Celery worker that runs the reconciles and the activator's wake-ups. Load raises the replica count, lighter
load brings it back to min without a failed request, min 0 reaches zero, and the next request succeeds."""

import json
import signal
import time

import pytest
import requests

from processors.demo import IRIS_SAMPLE, demo_service_files
from services.models import Project, Service
from services.selectors import service_token
from services.writes import autoscaler_set, service_create
from tests.gateway.conftest import gateway  # noqa: F401 -- fixture: a real gateway process
from tests.agent.kit import wait_for
from tests.harness.process import stop

from .conftest import converge
from .control_plane import LoadGenerator, start_autoscaler, start_worker

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
IRIS_BODY = json.dumps({"instances": [IRIS_SAMPLE]}).encode()
KPA = {
    "autoscaling.knative.dev/target": "1",  # one request in flight per instance
    # At Knative's default 70 % a single held request asks for ceil(1 / 0.7) = 2 pods, so a slow cold start
    # (the woken request held for more than 0.7 of the window) would rightly scale to 2 after the wake-up.
    "autoscaling.knative.dev/target-utilization-percentage": "100",
    "autoscaling.knative.dev/window": "6s",  # the shortest stable window Knative allows
    "autoscaling.knative.dev/scale-to-zero-grace-period": "6s",
}


def ready_instances(service: Service) -> int:
    return service.instances.filter(ready=True).count()


def fresh(service: Service) -> Service:
    return Service.objects.get(pk=service.pk)


def gateway_generation(gateway, name: str) -> int | None:
    answer = requests.get(f"{gateway.url}/api/v1/servicediscovery/upstreams/{name}", timeout=5)
    return answer.json().get("generation") if answer.status_code == 200 else None


def test_load_scales_up_idle_returns_to_min_then_zero_and_the_next_request_succeeds(local_cluster, demo_models,
                                                                                    gateway, tmp_path):
    worker = start_worker(local_cluster, tmp_path)
    autoscaler = start_autoscaler(local_cluster, tmp_path)
    try:
        document = next(f for f in demo_service_files(demo_models) if f["name"] == "demo_iris")
        document = document | {"autoscaler": {"min": 1, "max": 3, "kpa": KPA}}
        iris = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
        iris = converge(iris, lambda s: s.phase == "Running" and ready_instances(s) == 1, what="one instance")
        wait_for(lambda: gateway_generation(gateway, "demo_iris") == iris.generation, timeout=30,
                 what="the gateway to route demo_iris")
        headers = {"Authorization": service_token(iris)}
        path = "/v1/models/demo_iris:predict"

        with LoadGenerator(gateway.port, path, headers, body=IRIS_BODY, threads=6) as heavy:
            wait_for(lambda: ready_instances(iris) == 3, timeout=120,
                     what="load to raise demo_iris to 3 ready instances")
        ups = list(fresh(iris).events.filter(reason="Scaled").values_list("message", flat=True))
        assert any(" -> 3: " in message and "concurrency" in message for message in ups), ups

        # Lighter load while the autoscaler scales down: the stopped instances finish what they hold first.
        with LoadGenerator(gateway.port, path, headers, body=IRIS_BODY, threads=1, pause=0.05) as light:
            wait_for(lambda: ready_instances(iris) == 1 and fresh(iris).autoscaled_instances == 1 and
                     iris.instances.count() == 1, timeout=120, what="demo_iris to return to min 1")
            served_before = len(light.answers)
            wait_for(lambda: len(light.answers) > served_before + 20, timeout=30,
                     what="traffic to keep flowing on one instance")
        for load in (heavy, light):
            assert not load.errors, load.errors[:5]
            assert set(load.statuses()) == {200}, load.statuses()
        assert len(heavy.answers) > 500 and len(light.answers) > 50

        autoscaler_set(actor=None, service=iris, autoscaler={"min": 0, "max": 3, "kpa": KPA})
        wait_for(lambda: fresh(iris).autoscaled_instances == 0 and
                 not iris.instances.exists(), timeout=120, what="demo_iris to scale to zero")
        wait_for(lambda: gateway_generation(gateway, "demo_iris") == fresh(iris).generation, timeout=30,
                 what="the gateway to route demo_iris with no instance")
        zero = fresh(iris).events.filter(reason="Scaled", message__contains="-> 0").first()
        assert zero is not None and "scaling to zero" in zero.message, zero and zero.message

        began = time.monotonic()
        answer = requests.post(f"{gateway.url}{path}", data=IRIS_BODY, headers=headers, timeout=90)
        woke_in = time.monotonic() - began
        assert (answer.status_code, answer.json()) == (200, {"predictions": [0]}), answer.text
        print(f"\nfrom zero to the first answer: {woke_in:.2f} s")
        assert fresh(iris).events.filter(reason="Activated").exists()
        # The woken instance stays for the grace period instead of being sent straight back to zero.
        time.sleep(4)
        state = (fresh(iris).autoscaled_instances, list(iris.instances.values_list("name", "state", "ready")))
        assert state[0] == 1 and ready_instances(iris) == 1, state
    finally:
        stop(autoscaler, signal.SIGTERM)
        stop(worker, signal.SIGTERM)
    log = (tmp_path / "autoscaler.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def test_a_service_that_never_becomes_ready_after_a_wake_up_is_marked_failed_and_stays_at_zero(local_cluster,
                                                                                               settings):
    from deployer.activation import activate
    from deployer.autoscaling import AutoscalerLoop

    settings.FERRY_ACTIVATION_DEADLINE_SECONDS = 3
    never_ready = {"name": "never_ready", "processor": "custom",
                   "containers": [{"image": "none", "script": "sleep 600", "port": 8000}],  # never listens
                   "autoscaler": {"min": 0, "max": 1, "scaleStrategies": [{"metricName": "qps", "threshold": 10}]}}
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=never_ready)
    Service.objects.filter(pk=service.pk).update(autoscaled_instances=0)
    service = converge(service, lambda s: not s.instances.exists(), what="the service at zero")

    assert activate("never_ready", "local")
    service = converge(service, lambda s: s.phase == "Failed", timeout=60, what="the wake-up to fail")
    assert service.status_reason == "ActivationFailed"
    assert "became ready within 3 s of its wake-up from zero" in service.status_message
    degraded = next(c for c in service.conditions if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ActivationFailed")
    assert service.events.filter(reason="ActivationFailed", type="Warning").exists()
    service = converge(service, lambda s: not s.instances.exists(), what="the instance to stop")

    # No loop: neither the activator's next request nor the autoscaler wakes it again.
    assert not activate("never_ready", "local")
    import redis
    from django.conf import settings as django_settings

    client = redis.Redis.from_url(django_settings.REDIS_URL)
    route = json.loads(client.hget("ferry:routes:local", "never_ready"))  # deployer.routing.ROUTES_KEY
    assert "within 3 s of its wake-up" in route["failed"]  # the gateway answers 503 with it at once
    AutoscalerLoop(client).tick()
    assert fresh(service).autoscaled_instances == 0 and fresh(service).phase == "Failed"
    assert service.events.filter(reason="Activated").count() == 1

    # A change of the service clears the failure: it starts again like any changed service.
    service = autoscaler_set(actor=None, service=fresh(service), autoscaler={"min": 1})
    converge(service, lambda s: s.activation is None and s.phase != "Failed" and s.instances.exists(),
             what="the failure to clear")
