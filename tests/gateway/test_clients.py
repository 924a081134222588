"""Real traffic through a running gateway to real model servers run by a real node agent, with the official
clients: eas-prediction (gateway mode with the token's signature, and direct mode through the discovery
endpoint) and tritonclient[http] (V2 infer against demo_digits); and a service woken from zero by a request."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from processors.demo import IRIS_SAMPLE, demo_service_files, digits_v2_request
from services.models import Project, Service
from services.selectors import service_token
from services.writes import service_create
from tests.agent.kit import REPO
from tests.harness.process import stop

from .conftest import converge, eas_sdk

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
IRIS_BODY = json.dumps({"instances": [IRIS_SAMPLE]})


def create(document: dict) -> Service:
    return service_create(actor=None, project=Project.objects.get(name="default"), document=document)


def demo_file(demo_models, name: str) -> dict:
    return next(f for f in demo_service_files(demo_models) if f["name"] == name)


def running(service) -> bool:
    return service is not None and service.phase == "Running"


def routed(gateway, service: Service, timeout: float = 30) -> list[dict]:
    """The instances the gateway routes to, once they are the service's ready instances."""
    ports = sorted(service.instances.filter(ready=True).values_list("port", flat=True))
    url = f"{gateway.url}/api/v1/servicediscovery/upstreams/{service.name}"
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(url, timeout=5)
        items = answer.json()["endpoints"]["items"] if answer.status_code == 200 else []
        if ports and sorted(i["port"] for i in items) == ports:
            return items
        if time.monotonic() > deadline:
            raise AssertionError(f"the gateway routes {service.name} to {items}, not to ports {ports}")
        time.sleep(0.1)


def gateway_requests(gateway, service: str) -> float:
    prefix = f'ferry_gateway_requests_total{{code="200",service="{service}",version="1"}} '
    line = next((line for line in gateway.metrics().splitlines() if line.startswith(prefix)), prefix + "0")
    return float(line.rsplit(" ", 1)[1])


def test_it_serves_eas_sdk_triton_v1_and_v2_clients_through_the_gateway(local_cluster, demo_models, gateway,
                                                                         eas_python):
    iris = converge(create(demo_file(demo_models, "demo_iris")), running, what="demo_iris Running")
    digits = converge(create(demo_file(demo_models, "demo_digits")), running, what="demo_digits Running")
    routed(gateway, iris)
    routed(gateway, digits)
    iris_token, digits_token = service_token(iris), service_token(digits)
    endpoint = f"127.0.0.1:{gateway.port}"

    # eas-prediction, gateway mode: signed requests to /api/predict/demo_iris.
    before = gateway_requests(gateway, "demo_iris")
    answers = eas_sdk(eas_python, "gateway", endpoint, "demo_iris", iris_token, IRIS_BODY, count=3)
    assert [json.loads(a) for a in answers] == [{"predictions": [0]}] * 3
    assert gateway_requests(gateway, "demo_iris") == before + 3
    assert eas_sdk(eas_python, "gateway", endpoint, "demo_iris", "wrong-token", IRIS_BODY)["error"][0] == 401

    # eas-prediction, direct mode: discovery at the gateway, then the SDK calls the instance itself.
    before = gateway_requests(gateway, "demo_iris")
    answers = eas_sdk(eas_python, "direct", endpoint, "demo_iris", iris_token, IRIS_BODY, count=3)
    assert [json.loads(a) for a in answers] == [{"predictions": [0]}] * 3
    assert gateway_requests(gateway, "demo_iris") == before, "direct mode must bypass the gateway"

    # tritonclient[http]: V2 infer against demo_digits, JSON and binary tensors.
    from sklearn.datasets import load_digits

    client = triton.InferenceServerClient(url=endpoint)
    headers = {"Authorization": digits_token}
    pixels = np.asarray([digits_v2_request(7)["inputs"][0]["data"]], dtype=np.float32)
    for binary in (True, False):  # the client's default (binary tensors), then JSON only
        tensor = triton.InferInput("input", [1, 64], "FP32")
        tensor.set_data_from_numpy(pixels, binary_data=binary)
        # JSON only: Ferry's model server (kserve) reads a body without a JSON Content-Type as binary, and
        # tritonclient sends none; JSON outputs must be asked for too.
        outputs = None if binary else [triton.InferRequestedOutput("label", binary_data=False)]
        extra = {} if binary else {"Content-Type": "application/json"}
        # A copy: tritonclient writes Inference-Header-Content-Length into the dict it is given.
        result = client.infer("demo_digits", [tensor], outputs=outputs, headers={**headers, **extra})
        assert int(result.as_numpy("label").ravel()[0]) == int(load_digits().target[7])
    assert client.is_model_ready("demo_digits", headers=dict(headers))
    assert client.is_server_live()
    with pytest.raises(Exception, match="401|Authorization"):
        client.infer("demo_digits", [tensor], headers={"Authorization": "wrong"})

    # KServe V1 and plain EAS calls with the token.
    v1 = requests.post(f"{gateway.url}/v1/models/demo_iris:predict", data=IRIS_BODY,
                       headers={"Authorization": iris_token}, timeout=10)
    assert v1.status_code == 200 and v1.json() == {"predictions": [0]} and v1.headers["ferry-version"] == "1"
    eas = requests.post(f"{gateway.url}/api/predict/demo_digits", json=digits_v2_request(3),
                        headers={"Authorization": digits_token}, timeout=10)
    assert eas.status_code == 200 and eas.json()["outputs"][0]["data"][0] == int(load_digits().target[3])


def test_the_eas_sdk_works_from_any_time_zone_and_clients_work_under_the_eas_path(local_cluster, demo_models,
                                                                                   gateway, eas_python):
    iris = converge(create(demo_file(demo_models, "demo_iris")), running, what="demo_iris Running")
    digits = converge(create(demo_file(demo_models, "demo_digits")), running, what="demo_digits Running")
    routed(gateway, iris)
    routed(gateway, digits)
    iris_token, digits_token = service_token(iris), service_token(digits)
    endpoint = f"127.0.0.1:{gateway.port}"

    # The SDK signs its local time labelled GMT: Shanghai is 8 h ahead, Los Angeles 7 or 8 h behind, Kolkata
    # 5 h 30 ahead. Through the gateway, and directly at the instance (the same check).
    for tz in ("Asia/Shanghai", "America/Los_Angeles", "UTC", "Asia/Kolkata"):
        for mode in ("gateway", "direct"):
            answers = eas_sdk(eas_python, mode, endpoint, "demo_iris", iris_token, IRIS_BODY, count=2, tz=tz)
            assert [json.loads(a) for a in answers] == [{"predictions": [0]}] * 2, (tz, mode, answers)

    # A service name with a sub-path: the V1 route under /api/predict/demo_iris, at the gateway and at the
    # instance, signed over that whole path.
    for mode in ("gateway", "direct"):
        answers = eas_sdk(eas_python, mode, endpoint, "demo_iris/v1/models/demo_iris:predict", iris_token, IRIS_BODY,
                          tz="America/Los_Angeles")
        assert [json.loads(a) for a in answers] == [{"predictions": [0]}], (mode, answers)

    # tritonclient pointed at the EAS endpoint of a service, as EAS documents for Triton.
    from sklearn.datasets import load_digits

    client = triton.InferenceServerClient(url=f"{endpoint}/api/predict/demo_digits")
    headers = {"Authorization": digits_token}
    pixels = np.asarray([digits_v2_request(5)["inputs"][0]["data"]], dtype=np.float32)
    tensor = triton.InferInput("input", [1, 64], "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=True)
    result = client.infer("demo_digits", [tensor], headers=dict(headers))
    assert int(result.as_numpy("label").ravel()[0]) == int(load_digits().target[5])
    assert client.is_model_ready("demo_digits", headers=dict(headers))
    assert client.is_server_live(headers=dict(headers))
    assert client.get_model_metadata("demo_digits", headers=dict(headers))["name"] == "demo_digits"
    with pytest.raises(Exception, match="401|Authorization"):
        client.infer("demo_digits", [tensor], headers={"Authorization": "wrong"})


def test_it_refuses_an_unsigned_direct_call_at_the_instance(local_cluster, demo_models, gateway):
    iris = converge(create(demo_file(demo_models, "demo_iris")), running, what="demo_iris Running")
    (item,) = routed(gateway, iris)
    response = requests.post(f"http://{item['ip']}:{item['port']}/api/predict/demo_iris", data=IRIS_BODY, timeout=10)
    assert response.status_code == 401


def start_worker(local_cluster, tmp_path) -> subprocess.Popen:
    """A real Celery worker on the harness Redis and the test database: it runs deployer.activate_service and
    the reconciles the agent enqueues when the woken instance becomes ready."""
    from django.conf import settings

    # The same secret as this process: the worker decrypts service tokens to publish routes.
    env = local_cluster.env(DJANGO_SECRET_KEY=settings.SECRET_KEY, FERRY_ENCRYPTION_KEY=settings.FERRY_ENCRYPTION_KEY)
    with open(tmp_path / "worker.log", "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "celery,fetch", "--pool", "solo",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"gateway-test-{os.getpid()}@%h", "--loglevel", "INFO"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_it_wakes_a_service_scaled_to_zero_and_answers_the_first_request(local_cluster, demo_models, gateway,
                                                                         tmp_path):
    worker = start_worker(local_cluster, tmp_path)
    try:
        document = demo_file(demo_models, "demo_iris") | {
            "metadata": {"instance": 0, "cpu": 1, "memory": 512},
            "autoscaler": {"min": 0, "max": 1, "scaleStrategies": [{"metricName": "qps", "threshold": 10}]},
        }
        iris = converge(create(document), lambda s: s.observed_generation == s.generation, what="reconciled")
        assert not iris.local_instances.exists()
        url = f"{gateway.url}/api/v1/servicediscovery/upstreams/demo_iris"
        deadline = time.monotonic() + 10
        while requests.get(url, timeout=5).json().get("generation") != iris.generation:
            assert time.monotonic() < deadline, "the gateway never got the route of the service at zero"
            time.sleep(0.05)

        began = time.monotonic()
        response = requests.post(f"{gateway.url}/api/predict/demo_iris", data=IRIS_BODY,
                                 headers={"Authorization": service_token(iris)}, timeout=90)
        took = time.monotonic() - began
    finally:
        stop(worker, signal.SIGTERM)
    worker_log = (tmp_path / "worker.log").read_text()[-3000:]
    assert response.status_code == 200, (response.status_code, response.text, worker_log)
    assert response.json() == {"predictions": [0]}
    assert took > 0.5  # it waited for an instance to start
    iris.refresh_from_db()
    assert iris.events.filter(reason="Activated").exists()
    assert 'ferry_gateway_cold_starts_total{service="demo_iris",version="1"}' in gateway.metrics()
