"""Secrets stay secret (docs/security.md): after a full scenario, no secret appears anywhere it must not.

The scenario runs as a user works, with real parts: an administrator registers a Kubernetes cluster by
kubeconfig (the fake API server stands for the cluster) and grants it; alice mints an API token and an
AccessKey through the API, deploys demo_iris with that token onto the local cluster (a real node agent and
model server, a real Celery worker, the real gateway), asks the console for the service token, predicts
through the gateway with it (plain and with a bad token), deploys a service onto the Kubernetes cluster,
and reads her service in the API and the console.

Then every place a secret could leak is read and searched for each secret:
- every log: this process's (the API, the reconciles it ran, at DEBUG), the node agent's, the worker's, the
  gateway's, every instance log under the var dir;
- every event message and status message stored;
- the command line of every process on the machine (what `ps` shows to any user);
- every key and value in Redis;
- every console page and API answer alice and a viewer get after creation.
The service token is the caller's credential for predictions: it is shown on demand (the console's POST
"token" action, DescribeService's AccessToken for writers, as EAS does) and nowhere else.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psutil
import pytest
import redis
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from processors.demo import IRIS_SAMPLE, demo_service_files
from services.models import Cluster, ClusterGrant, Project, Service
from tests.agent.kit import wait_for
from tests.api.conftest import make_member
from tests.e2e.conftest import converge, demo_models, local_cluster  # noqa: F401 -- fixtures
from tests.e2e.control_plane import start_worker
from tests.harness.process import stop
from tests.gateway.conftest import gateway  # noqa: F401 -- fixture: a real gateway process
from tests.kubernetes.conftest import fake  # noqa: F401 -- fixture: the fake Kubernetes API server
from tests.kubernetes.test_driver import kubeconfig

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
KUBE_TOKEN = "kube-bearer-secret-6f0d21"


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def console_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def all_logs(*paths: Path) -> dict[str, str]:
    logs = {}
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and p.suffix == ".log"]
        for path in files:
            logs[str(path)] = path.read_text(errors="replace")
    return logs


def command_lines() -> dict[str, str]:
    lines = {}
    for process in psutil.process_iter(["pid", "cmdline"]):
        lines[f"pid {process.info['pid']}"] = " ".join(process.info["cmdline"] or ())
    return lines


def redis_contents() -> dict[str, str]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    contents = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        value = {"string": lambda: client.get(key), "hash": lambda: client.hgetall(key),
                 "list": lambda: client.lrange(key, 0, -1), "set": lambda: client.smembers(key),
                 "zset": lambda: client.zrange(key, 0, -1)}.get(kind, lambda: b"")()
        contents[key.decode(errors="replace")] = repr(value)
    return contents


def leaks(secrets: dict[str, str], places: dict[str, str]) -> list[str]:
    return [f"{name} in {where}" for name, secret in secrets.items()
            for where, text in places.items() if secret in text]


def test_no_secret_is_found_anywhere_after_a_full_scenario(local_cluster, demo_models, gateway, fake, tmp_path,
                                                           caplog):
    caplog.set_level("DEBUG")
    admin = get_user_model().objects.create_superuser("root", password="not-used")
    alice = make_member("alice", "team_a")
    vera = make_member("vera", "team_a", role="viewer")
    team_a = Project.objects.get(name="team_a")
    worker = start_worker(local_cluster, tmp_path)
    try:
        # An administrator registers a Kubernetes cluster; its kubeconfig holds a bearer token.
        console_admin = bearer(_token_of(admin))
        answer = console_admin.post("/api/v2/clusters", {"ClusterName": "kube", "Kubeconfig": kubeconfig(fake.url)
                                 .replace("not-a-real-token", KUBE_TOKEN)}, format="json")
        assert answer.status_code == 201, answer.content
        ClusterGrant.objects.create(project=team_a, cluster=Cluster.objects.get(name="kube"))

        # alice mints credentials: each secret is shown once, in the answer that creates it.
        alice_session = bearer(_token_of(alice))
        api_token = alice_session.post("/api/v2/ferry/tokens", {"Name": "ci"}, format="json").json()["Token"]
        access_key = alice_session.post("/api/v2/ferry/accesskeys", {"Description": "laptop"},
                                        format="json").json()["AccessKeySecret"]
        alice_api = bearer(api_token)

        iris = next(f for f in demo_service_files(demo_models) if f["name"] == "demo_iris")
        created = alice_api.post("/api/v2/services?WorkspaceId=team_a", iris, format="json")
        assert created.status_code == 202, created.content
        service = Service.objects.get(name="demo_iris")
        service = converge(service, lambda s: s.phase == "Running", what="demo_iris to run")
        on_kube = alice_api.post("/api/v2/services?WorkspaceId=team_a",
                                 {k: v for k, v in iris.items() if k != "warm_up_data_path"} |
                                 {"name": "kube_iris", "model_path": "https://models.example.test/iris/",
                                  "metadata": iris["metadata"] | {"resource": "kube"}},
                                 format="json")
        assert on_kube.status_code == 202, on_kube.content

        # The service token, on demand, from the console; then predictions through the gateway with it.
        alice_console = console_for(alice)
        page = alice_console.post("/services/local/demo_iris/actions/token/", HTTP_HX_REQUEST="true")
        assert page.status_code == 200
        service_token = _service_token_of(service)
        assert service_token in page.content.decode()
        body = json.dumps({"instances": [IRIS_SAMPLE]})
        wait_for(lambda: requests.post(f"{gateway.url}/api/predict/demo_iris", data=body, timeout=10,
                                       headers={"Authorization": service_token}).status_code == 200,
                 timeout=60, what="a prediction through the gateway")
        refused = requests.post(f"{gateway.url}/api/predict/demo_iris", data=body, timeout=10,
                                headers={"Authorization": service_token[:-4] + "AAAA"})
        assert refused.status_code == 401

        secrets = {"the API token": api_token, "the AccessKey secret": access_key,
                   "the kubeconfig's token": KUBE_TOKEN, "the service token": service_token,
                   "the secret key": settings.SECRET_KEY}
        places = {**all_logs(tmp_path), "this process's log": caplog.text,
                  **{f"event {e.pk}": e.message for s in Service.objects.all() for e in s.events.all()},
                  **{f"status of {s.name}": s.status_message for s in Service.objects.all()},
                  "the gateway's log": gateway.output(),
                  **command_lines(), **{f"redis {k}": v for k, v in redis_contents().items()}}
        # The search covers what it claims: the processes' logs, the instance's, Redis's routes, `ps`.
        searched = " ".join(places)
        for part in ("worker.log", "agent", "instance.log", "the gateway's log", "redis ferry:routes:local"):
            assert part in searched, f"nothing from {part} was searched: {sorted(places)[:40]}"
        # Pages and answers after creation: the service token only where asked for, nothing else ever.
        reads = {"/", "/keys/", "/clusters/", "/services/local/demo_iris/",
                 "/services/local/demo_iris/logs/", "/services/local/demo_iris/events/"}
        for who, client in (("alice", alice_console), ("vera", console_for(vera)), ("root", console_for(admin))):
            for path in reads:
                places[f"console {path} as {who}"] = client.get(path).content.decode(errors="replace")
        for who, client in (("alice", alice_api), ("vera", bearer(_token_of(vera))), ("root", console_admin)):
            for path in ("ferry/tokens", "ferry/accesskeys", "clusters", "clusters/kube", "services",
                         "services/kube/kube_iris/manifests"):
                places[f"API {path} as {who}"] = client.get(f"/api/v2/{path}").content.decode(errors="replace")
        places["DescribeService as vera"] = bearer(_token_of(vera)).get(
            "/api/v2/services/local/demo_iris").content.decode()

        found = leaks(secrets, places)
        assert not found, found
        # The searches can find: each secret is where it was shown.
        assert leaks({"the service token": service_token}, {"token page": page.content.decode()})
    finally:
        stop(worker, signal.SIGTERM)


def _token_of(user) -> str:
    from services.writes import api_token_create

    return api_token_create(user=user, name="scenario")[1]


def _service_token_of(service: Service) -> str:
    from services.selectors import service_token

    return service_token(service)
