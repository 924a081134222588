"""Ferry's own Redis on Kubernetes (platform/kubernetes/redis.yaml) asks every client for its password.

The Redis container's command and args run here as the kubelet runs them (a real redis-server, the env the
manifest gives it, the password as the Secret would), on a loopback port. A client without the password (any
pod of the cluster that reaches the Service) tries to read, write and reconfigure; each attempt is refused and
the data is unchanged. The web's REDIS_URL, expanded the way the kubelet expands `$(VAR)`, reaches it; the
readiness probe passes with the container's env and fails without the password. Nothing in the process list
shows the password.
"""

import os
import re
import secrets
import socket
import subprocess
from pathlib import Path

import pytest
import redis
import yaml

from tests.harness.process import free_port, wait_until
from tests.harness.redis import find_redis_server

PLATFORM = Path(__file__).resolve().parents[2] / "platform" / "kubernetes"
# What a client without the password sends (RESP inline commands), and the refusal it must get.
ATTEMPTS = [
    ("PING", "NOAUTH"), ("GET ferry:route", "NOAUTH"), ("SET ferry:route evil", "NOAUTH"), ("KEYS *", "NOAUTH"),
    ("CONFIG GET requirepass", "NOAUTH"), ("CONFIG SET requirepass ''", "NOAUTH"), ("FLUSHALL", "NOAUTH"),
    ("DEL ferry:route", "NOAUTH"), ("AUTH wrong-password", "WRONGPASS"), ("AUTH default wrong", "WRONGPASS"),
    ("EVAL \"return redis.call('FLUSHALL')\" 0", "NOAUTH"), ("SUBSCRIBE celery", "NOAUTH"),
]


def _workload(name: str) -> dict:
    for path in PLATFORM.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in ("Deployment", "Job") and doc["metadata"]["name"] == name:
                return doc["spec"]["template"]["spec"]["containers"][0]
    raise AssertionError(f"no workload {name}")


def _kubelet_env(container: dict, secret: str) -> dict[str, str]:
    """The container's env as the kubelet makes it: secretKeyRef values from the Secret, `$(VAR)` expanded
    from the variables before it."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            assert item["valueFrom"]["secretKeyRef"] == {"name": "ferry-redis", "key": "password"}
            env[item["name"]] = secret
        else:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
    return env


@pytest.fixture(scope="module")
def redis_pod(tmp_path_factory):
    container = _workload("ferry-redis")
    password = secrets.token_hex(32)
    port = free_port()
    data = tmp_path_factory.mktemp("redis-data")
    binary = Path(find_redis_server())
    env = {"PATH": f"{binary.parent}:{os.environ['PATH']}", **_kubelet_env(container, password)}
    argv = [*container["command"], *container["args"], "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(data)]
    log = data / "redis.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port, password=password)
    wait_until(lambda: _answers(client), proc=process, log=log, timeout=15, what="the Redis of redis.yaml")
    client.set("ferry:route", "the-right-backend")
    yield {"port": port, "password": password, "client": client, "env": env, "container": container,
           "pid": process.pid}
    process.terminate()
    process.wait(timeout=10)


def _answers(client) -> bool:
    try:
        return client.ping()
    except redis.exceptions.ConnectionError:
        return False


def _send(port: int, command: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command.encode() + b"\r\n")
        return sock.recv(4096).decode(errors="replace")


@pytest.mark.parametrize(("command", "refusal"), ATTEMPTS)
def test_a_client_without_the_password_reads_and_changes_nothing(redis_pod, command, refusal):
    answer = _send(redis_pod["port"], command)
    assert answer.startswith("-") and refusal in answer, answer
    client = redis_pod["client"]
    assert client.get("ferry:route") == b"the-right-backend" and client.keys("*") == [b"ferry:route"]
    assert client.config_get("requirepass")["requirepass"] == redis_pod["password"]


def test_the_web_reaches_redis_with_the_url_its_manifest_builds(redis_pod):
    env = _kubelet_env(_workload("ferry-web"), redis_pod["password"])
    url = env["REDIS_URL"].replace("ferry-redis:6379", f"127.0.0.1:{redis_pod['port']}")
    assert redis_pod["password"] in url and "$(" not in url
    assert redis.Redis.from_url(url).get("ferry:route") == b"the-right-backend"


def test_the_readiness_probe_passes_with_the_containers_env_only(redis_pod):
    (shell, flag, script) = redis_pod["container"]["readinessProbe"]["exec"]["command"]
    script = script.replace("redis-cli", f"redis-cli -p {redis_pod['port']}")
    with_env = subprocess.run([shell, flag, script], env=redis_pod["env"], timeout=10)
    without = subprocess.run([shell, flag, script], env={"PATH": redis_pod["env"]["PATH"]}, timeout=10)
    assert with_env.returncode == 0 and without.returncode != 0


def test_the_password_is_not_on_the_command_line(redis_pod):
    command_line = Path(f"/proc/{redis_pod['pid']}/cmdline").read_bytes().decode(errors="replace")
    assert "redis-server" in command_line and redis_pod["password"] not in command_line
