"""A python pool (docs/mesh.md): each model in it brings its own handler (processor_path + processor_entry), loaded
into the pool's shared model servers on its first request, and answers with its own code through the gateway."""

import json
import signal
import textwrap

import pytest
import requests

from services.errors import InvalidRequest
from services.models import ModelPlacement, Project
from services.selectors import service_token
from services.writes import service_create
from tests.agent.kit import wait_for
from tests.e2e.conftest import converge
from tests.e2e.control_plane import start_autoscaler, start_worker
from tests.harness.process import stop

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
HANDLER = textwrap.dedent('''
    GREETING = {greeting!r}

    def predict(body):
        return {{"greeting": GREETING, "echo": body}}
''')


def handler_dir(root, name: str, greeting: str):
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "app.py").write_text(HANDLER.format(greeting=greeting))
    return str(directory)


def test_python_pool_models_run_their_own_handlers(local_cluster, gateway, tmp_path):
    worker = start_worker(local_cluster, tmp_path)
    autoscaler = start_autoscaler(local_cluster, tmp_path)
    project = Project.objects.get(name="default")
    try:
        pool = service_create(actor=None, project=project, document={
            "name": "handlers", "processor": "python", "metadata": {"type": "ModelPool", "instance": 1}})
        with pytest.raises(InvalidRequest, match="processor_entry"):
            service_create(actor=None, project=project, document={
                "name": "nohandler", "processor_path": handler_dir(tmp_path, "x", "x"),
                "metadata": {"pool": "handlers"}})
        converge(pool, lambda s: s.phase == "Running", what="the python pool")
        models = [service_create(actor=None, project=project, document={
            "name": name, "processor_path": handler_dir(tmp_path, name, f"hello from {name}"),
            "processor_entry": "app.py", "metadata": {"pool": "handlers"}}) for name in ("h1", "h2")]
        for model in models:
            converge(model, lambda s: s.phase == "Running", what=f"{model.name} to be servable")
            wait_for(lambda: requests.get(f"{gateway.url}/api/v1/servicediscovery/upstreams/{model.name}",
                                          timeout=5).status_code == 200, timeout=30, what="the route")
        for model in models:
            answer = requests.post(f"{gateway.url}/api/predict/{model.name}", data=json.dumps({"x": 1}), timeout=60,
                                   headers={"Authorization": service_token(model),
                                            "Content-Type": "application/json"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["greeting"] == f"hello from {model.name}", answer.json()
        assert sorted(ModelPlacement.objects.values_list("key", flat=True)) == ["h1-v1", "h2-v1"]
    finally:
        stop(autoscaler, signal.SIGTERM)
        stop(worker, signal.SIGTERM)
