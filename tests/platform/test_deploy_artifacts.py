"""The deploy artifacts run: the health endpoints answer probes that call a pod IP (not an allowed host), the
compose file runs every process with a restart policy and the gateway on the agent's loopback, migrations run
once (a compose one-shot, a Kubernetes Job), and the Kubernetes probes of the web use the health paths."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from config.health import PROBES
from tests.agent import kit
from tests.agent.kit import REPO, wait_for
from tests.harness.process import free_port
from tests.kubernetes.schemas import validate

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
KUBERNETES = REPO / "platform" / "kubernetes"
POD_IP_HOST = "10.1.2.3:8000"  # what a kubelet's probe sends: never in ALLOWED_HOSTS
# Compose services that load Django and so need the schema before they start.
DJANGO_SERVICES = {"web", "worker", "fetcher", "beat", "agent", "autoscaler"}


def _var_dir() -> str:
    """FERRY_VAR_DIR as the image sets it."""
    match = re.search(r"FERRY_VAR_DIR=(\S+)", (REPO / "platform" / "Dockerfile").read_text())
    return match.group(1)


# --- health endpoints through Django ---------------------------------------------------------------------

@pytest.mark.django_db
def test_health_endpoints_answer_whatever_the_host(client):
    # The same host on any other path is refused: the probes do not merely pass because the host is allowed.
    assert client.get("/login/", HTTP_HOST=POD_IP_HOST).status_code == 400
    live = client.get("/healthz", HTTP_HOST=POD_IP_HOST)
    ready = client.get("/readyz", HTTP_HOST=POD_IP_HOST)
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "database": "ok"})


@pytest.mark.django_db
def test_health_endpoints_need_no_session_or_credentials(client):
    response = client.head("/healthz", HTTP_HOST=POD_IP_HOST)
    assert response.status_code == 200 and "Set-Cookie" not in response.headers


# --- health endpoints of the real web server -------------------------------------------------------------

@contextmanager
def _gunicorn(tmp_path: Path, database_url: str):
    """gunicorn as the image runs it (config/gunicorn.conf.py) on a free port; yields the port."""
    from django.conf import settings

    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SECRET_KEY": settings.SECRET_KEY,
           "FERRY_ENCRYPTION_KEY": settings.FERRY_ENCRYPTION_KEY, "WEB_CONCURRENCY": "1", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / f"gunicorn-{port}.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi",
                                   "--bind", f"127.0.0.1:{port}"], cwd=REPO, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _get(port, "/healthz")[0] == 200, 30, f"gunicorn on port {port} (log: {log})")
        yield port
    finally:
        server.terminate()
        server.wait(10)


def _get(port: int, path: str, host: str = POD_IP_HOST) -> tuple[int | None, dict | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    except OSError:
        return None, None
    finally:
        connection.close()


def _run_healthcheck(service: str, port: int) -> subprocess.CompletedProcess:
    """The compose healthcheck command of `service`, aimed at `port` instead of the container's own."""
    argv = SERVICES[service]["healthcheck"]["test"]
    assert argv[0] == "CMD"
    argv = [sys.executable if part == "python" else re.sub(r"127\.0\.0\.1:\d+/", f"127.0.0.1:{port}/", part)
            for part in argv[1:]]
    return subprocess.run(argv, capture_output=True, timeout=30)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_real_web_server_answers_probes_and_the_compose_healthcheck(tmp_path):
    with _gunicorn(tmp_path, kit.test_database_url()) as port:
        assert _get(port, "/healthz") == (200, {"status": "ok"})
        assert _get(port, "/readyz") == (200, {"status": "ok", "database": "ok"})
        assert _run_healthcheck("web", port).returncode == 0


def test_readiness_fails_cleanly_when_the_database_is_unreachable(tmp_path):
    unreachable = f"postgres://ferry:secret-password@127.0.0.1:{free_port()}/ferry"
    with _gunicorn(tmp_path, unreachable) as port:
        assert _get(port, "/healthz") == (200, {"status": "ok"})  # alive: restarting would not help
        status, body = _get(port, "/readyz")
        assert (status, body) == (503, {"status": "unavailable", "database": "unreachable"})
        assert _run_healthcheck("web", port).returncode != 0


def test_real_gateway_passes_its_compose_healthcheck(tmp_path):
    port = free_port()
    env = {**os.environ, "FERRY_GATEWAY_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        gateway = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _run_healthcheck("gateway", port).returncode == 0, 30,
                 f"the gateway's healthcheck on port {port} (log: {log})")
    finally:
        gateway.terminate()
        gateway.wait(10)


# --- docker-compose.yml ----------------------------------------------------------------------------------

def test_every_long_running_service_restarts_by_itself():
    for name, service in SERVICES.items():
        expected = {"no"} if name == "migrate" else {"unless-stopped", "on-failure", "always"}
        assert service.get("restart") in expected, f"{name}: restart {service.get('restart')!r}"


def test_migrations_run_once_before_the_django_processes():
    assert "manage.py migrate" in " ".join(SERVICES["migrate"]["command"])
    for name, service in SERVICES.items():
        if name != "migrate":
            assert "migrate" not in json.dumps(service.get("command", [])), f"{name} migrates"
    for name in DJANGO_SERVICES:
        condition = SERVICES[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_depends_on_conditions_can_be_met():
    """service_healthy needs a healthcheck, service_completed_successfully a one-shot: else `up` hangs."""
    for name, service in SERVICES.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name} waits for {target}'s health, it has none"
            if rule["condition"] == "service_completed_successfully":
                assert SERVICES[target]["restart"] == "no", f"{target} never completes"


def test_the_gateway_shares_the_agents_loopback():
    agent, gateway, node = SERVICES["agent"], SERVICES["gateway"], SERVICES["node"]
    assert agent["command"][:3] == ["python", "manage.py", "runagent"]
    assert gateway["command"] == ["python", "-m", "gateway"]
    assert agent["network_mode"] == gateway["network_mode"] == "service:node"
    # Ports belong to the namespace's owner; the gateway listens beyond loopback to receive them.
    assert "ports" not in agent and "ports" not in gateway
    assert any(port.endswith(":8080") for port in node["ports"])
    assert gateway["environment"]["FERRY_GATEWAY_HOST"] == "0.0.0.0"


def test_processes_that_share_files_share_the_var_volume():
    """The fetcher downloads models the agent's instances read; the web reads the logs the agent writes."""
    mount = f"ferry-var:{_var_dir()}"
    for name in ("web", "worker", "fetcher", "beat", "agent", "migrate"):
        assert mount in SERVICES[name]["volumes"], name


def _queues(argv: list[str]) -> set[str]:
    """The queues a `celery worker` command line consumes (Celery's default one without -Q)."""
    return set(argv[argv.index("-Q") + 1].split(",")) if "-Q" in argv else {"celery"}


def _routed_queues() -> set[str]:
    from django.conf import settings

    return {"celery"} | {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}


def _procfile_workers() -> dict[str, list[str]]:
    lines = (REPO / "Procfile").read_text().splitlines()
    commands = dict(line.split(": ", 1) for line in lines if line and not line.startswith("#"))
    return {name: command.split() for name, command in commands.items() if command.startswith("celery -A config worker")}


def test_every_queue_a_task_is_routed_to_has_a_worker_and_fetches_have_their_own():
    """A queue nobody consumes would leave every version waiting for its model; a worker that served both would
    let a slow download hold the reconciles."""
    compose = {name: service["command"] for name, service in SERVICES.items()
               if service.get("command", [])[:4] == ["celery", "-A", "config", "worker"]}
    kubernetes = _workloads("Deployment")["ferry-worker"]["spec"]["template"]["spec"]["containers"][0]["command"]
    for workers in (_procfile_workers(), compose):
        assert set().union(*(_queues(argv) for argv in workers.values())) == _routed_queues(), workers
        assert _queues(workers["worker"]) == {"celery"} and _queues(workers["fetcher"]) == {"fetch"}
    assert _queues(kubernetes) == _routed_queues()


def test_compose_healthchecks_use_paths_that_exist():
    assert "/readyz" in " ".join(SERVICES["web"]["healthcheck"]["test"]) and "/readyz" in PROBES


# --- Kubernetes manifests --------------------------------------------------------------------------------

def _documents() -> list[dict]:
    names = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"]
    return [doc for name in names for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]


def _workloads(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in _documents() if doc["kind"] == kind}


def test_every_kubernetes_manifest_validates():
    documents = _documents()
    for document in documents:
        validate(document)
    assert {"Deployment", "Job", "Secret"} <= {doc["kind"] for doc in documents}


def test_web_probes_use_the_health_paths():
    (container,) = _workloads("Deployment")["ferry-web"]["spec"]["template"]["spec"]["containers"]
    ports = {port["name"] for port in container["ports"]}
    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (readiness["path"], liveness["path"]) == ("/readyz", "/healthz")
    assert readiness["port"] in ports and liveness["port"] in ports
    assert set(PROBES) == {"/readyz", "/healthz"}


def test_a_job_migrates_and_no_replica_does():
    job = _workloads("Job")["ferry-migrate"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "manage.py migrate" in " ".join(container["command"])
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    for name, deployment in _workloads("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert "initContainers" not in pod, name
        assert all("migrate" not in json.dumps(c.get("command", [])) for c in pod["containers"]), name


def test_web_replicas_share_no_per_pod_files():
    """The secret key comes from the Secret; nothing a replica needs lives on its own emptyDir."""
    pod = _workloads("Deployment")["ferry-web"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "ferry-secrets"} in [source.get("secretRef") for source in container["envFrom"]]
    assert "DJANGO_SECRET_KEY" in _workloads("Secret")["ferry-secrets"]["stringData"]
    assert all(mount["mountPath"] != _var_dir() for mount in container["volumeMounts"])


# --- Redis asks for a password (platform/kubernetes/redis.yaml) ------------------------------------------
REDIS_SECRET = {"name": "ferry-redis", "key": "password"}


def _containers() -> dict[str, dict]:
    """Every container of every workload, by workload name (Deployments and the Job)."""
    return {doc["metadata"]["name"]: container for doc in _documents() if doc["kind"] in ("Deployment", "Job")
            for container in doc["spec"]["template"]["spec"]["containers"]}


def _env(container: dict) -> list[dict]:
    return container.get("env", [])


def test_redis_takes_its_password_from_the_secret():
    redis = _containers()["ferry-redis"]
    env = {item["name"]: item for item in _env(redis)}
    for name in ("REDIS_PASSWORD", "REDISCLI_AUTH"):
        assert env[name]["valueFrom"]["secretKeyRef"] == REDIS_SECRET, name
    assert "requirepass $REDIS_PASSWORD" in " ".join(redis["command"])
    assert "REDISCLI_AUTH" not in json.dumps(redis["readinessProbe"])  # the probe reads it from the env


def test_every_process_that_talks_to_redis_builds_its_url_with_the_password():
    """web, worker, beat and the migrate Job: REDIS_PASSWORD from the Secret, then REDIS_URL naming it (the
    kubelet expands $(VAR) only from variables defined before), and no REDIS_URL without it anywhere."""
    for name in ("ferry-web", "ferry-worker", "ferry-beat", "ferry-migrate"):
        names = [item["name"] for item in _env(_containers()[name])]
        env = {item["name"]: item for item in _env(_containers()[name])}
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == REDIS_SECRET, name
        assert env["REDIS_URL"]["value"].startswith("redis://:$(REDIS_PASSWORD)@"), name
        assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL"), name
    config_maps = [doc for doc in _documents() if doc["kind"] == "ConfigMap"]
    assert config_maps and all("REDIS_URL" not in doc.get("data", {}) for doc in config_maps)


def test_no_manifest_holds_a_redis_password():
    """The Secret ferry-redis is the operator's (docs/kubernetes.md): not in the kustomization, and no manifest
    writes a password into a Redis URL, a requirepass or a Secret."""
    assert not [doc for doc in _documents() if doc["kind"] == "Secret" and doc["metadata"]["name"] == "ferry-redis"]
    for doc in _documents():
        text = json.dumps(doc)
        assert not re.search(r"redis://:(?!\$\(REDIS_PASSWORD\)@)[^@\"]*@", text), doc["metadata"]["name"]
        assert not re.search(r"requirepass (?!\$REDIS_PASSWORD)", text), doc["metadata"]["name"]
        for key in {**doc.get("data", {}), **doc.get("stringData", {})}:
            assert "REDIS" not in key.upper(), (doc["metadata"]["name"], key)
