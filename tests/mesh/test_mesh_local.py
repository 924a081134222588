"""The model mesh end to end on the local cluster, every part real as `make run` runs it: a pool of two model
servers started empty by the node agent, models in it loaded on their first request by the placer (a Celery
worker runs it; the autoscaler loop asks for passes), requests through the gateway on EAS, V1 and V2 paths with
each model's own token, and a pool instance killed under load."""

import json
import signal
import time

import psutil
import pytest
import requests

from deployer.models import LocalInstance
from services.models import ModelPlacement, Project, Service
from services.selectors import service_token
from services.writes import service_create, service_update
from tests.agent.kit import command_of, wait_for
from tests.e2e.conftest import converge
from tests.e2e.control_plane import LoadGenerator, start_autoscaler, start_worker
from tests.harness.process import stop

from .models import IRIS_SAMPLE, constant_models

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
POOL = {"name": "pool1", "processor": "sklearn", "metadata": {"type": "ModelPool", "instance": 2, "memory": 1024},
        "model_mesh": {"load_timeout": 60}}


def fresh(service: Service) -> Service:
    return Service.objects.get(pk=service.pk)


def routed(gateway, service: Service) -> bool:
    answer = requests.get(f"{gateway.url}/api/v1/servicediscovery/upstreams/{service.name}", timeout=5)
    return answer.status_code == 200 and answer.json().get("generation") == fresh(service).generation


def predict(gateway, service: Service, path: str, body: dict, token: str | None = None) -> requests.Response:
    return requests.post(f"{gateway.url}{path}", data=json.dumps(body),
                         headers={"Authorization": token or service_token(service), "Content-Type": "application/json"},
                         timeout=90)


def copies(service: Service) -> list[str]:
    return sorted(ModelPlacement.objects.filter(version__service=service, state="Loaded")
                  .values_list("instance__name", flat=True))


def test_models_load_on_first_request_and_survive_a_pool_instance_killed_under_load(local_cluster, gateway,
                                                                                    tmp_path):
    worker = start_worker(local_cluster, tmp_path)
    autoscaler = start_autoscaler(local_cluster, tmp_path)
    project = Project.objects.get(name="default")
    try:
        pool = service_create(actor=None, project=project, document=POOL)
        pool = converge(pool, lambda s: s.phase == "Running" and s.instances.filter(ready=True).count() == 2,
                        what="two empty pool instances")
        models = []
        for index, path in enumerate(constant_models(tmp_path / "models", 3)):
            model = service_create(actor=None, project=project,
                                   document={"name": f"m{index}", "model_path": str(path),
                                             "metadata": {"pool": "pool1"}})
            models.append(converge(model, lambda s: s.phase == "Running", what=f"m{index} to be servable"))
        for model in models:
            wait_for(lambda: routed(gateway, model), timeout=30, what=f"the gateway to route {model.name}")
        assert not ModelPlacement.objects.exists()  # nothing is loaded before anyone asks

        # First requests, each on another protocol: held while the placer loads the model, then answered by it.
        began = time.monotonic()
        answer = predict(gateway, models[0], "/api/predict/m0", {"instances": [IRIS_SAMPLE]})
        first_request = time.monotonic() - began
        assert (answer.status_code, answer.json()) == (200, {"predictions": [0]}), answer.text
        answer = predict(gateway, models[1], "/v1/models/m1:predict", {"instances": [IRIS_SAMPLE]})
        assert (answer.status_code, answer.json()) == (200, {"predictions": [1]}), answer.text
        v2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [IRIS_SAMPLE]}]}
        answer = predict(gateway, models[2], "/v2/models/m2/infer", v2)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_name"] == "m2" and answer.json()["outputs"][0]["data"] == [2], answer.json()
        print(f"\nfirst request of an unloaded model: {first_request:.2f} s")
        assert all(copies(m) for m in models), [copies(m) for m in models]
        loaded = fresh(models[0]).events.filter(reason="LoadedModel").first()
        assert loaded is not None and "m0-v1" in loaded.message, loaded
        assert fresh(pool).events.filter(reason="LoadedModel").count() >= 3

        # Each model answers only its own token: the pool's and another model's are refused.
        assert predict(gateway, models[0], "/api/predict/m0", {"instances": [IRIS_SAMPLE]},
                       token=service_token(models[1])).status_code == 401
        assert predict(gateway, models[0], "/api/predict/m0", {"instances": [IRIS_SAMPLE]},
                       token=service_token(pool)).status_code == 401

        # Kill the instance that holds m0 while clients call it: only requests in flight may fail, and m0 is
        # served again (another copy or a re-placement on the restarted instance).
        holder = copies(models[0])[0]
        headers = {"Authorization": service_token(models[0])}
        body = json.dumps({"instances": [IRIS_SAMPLE]}).encode()
        threads = 4
        with LoadGenerator(gateway.port, "/api/predict/m0", headers, body=body, threads=threads) as load:
            wait_for(lambda: len(load.answers) > 50, timeout=30, what="traffic on m0")
            # Hot (far above model_mesh.rate_per_copy, 20 req/s by default): a copy on the other instance too.
            wait_for(lambda: len(copies(models[0])) == 2, timeout=30, what="a second copy of the hot m0")
            # The event says why (recorded just after the copy is).
            wait_for(lambda: fresh(models[0]).events.filter(reason="LoadedModel", message__contains="hot:").exists(),
                     timeout=10, what="the second copy's reason")
            pid = command_of(LocalInstance.objects.get(name=holder).pid)
            psutil.Process(pid).kill()
            killed_at = time.monotonic()
            wait_for(lambda: len([a for a in load.since(killed_at) if a.status == 200]) > 50, timeout=90,
                     what="m0 to be served again after its instance was killed")
        failed = [a for a in load.answers if a.status != 200]
        assert len(failed) <= threads, (len(failed), failed[:5])
        assert not load.errors, load.errors[:5]

        # A new version of a model is a rollout as for any service: the new file's answers take over.
        service_update(actor=None, service=models[0], patch={"model_path": str(constant_models(tmp_path / "v2", 2)[1])})
        converge(models[0], lambda s: s.versions.get(number=2).weight == 100, timeout=60,
                 what="version 2 of m0 to take all traffic")
        wait_for(lambda: predict(gateway, models[0], "/api/predict/m0", {"instances": [IRIS_SAMPLE]}).json()
                 == {"predictions": [1]}, timeout=60, what="m0's version 2 to answer")
        wait_for(lambda: not ModelPlacement.objects.filter(key="m0-v1").exists(), timeout=30,
                 what="version 1 of m0 to be unloaded")
    finally:
        stop(autoscaler, signal.SIGTERM)
        stop(worker, signal.SIGTERM)
    for log in ("autoscaler.log", "worker.log"):
        path = tmp_path / log
        if path.exists():
            assert "Traceback" not in path.read_text(), path.read_text()[-3000:]
