"""The gateway's boundaries, attacked through a real gateway process on the harness's real Redis.

Each attempt an attacker would make is one entry of ATTEMPTS and is asserted to fail twice over: the status
the gateway answers AND the state (what the echo instances received, what Redis and the gateway's table hold).
- routes are keyed by cluster: another cluster's same-named service cannot overwrite or delete a route;
- tokens: another service's token, a group member's token from another project, and a service named like a
  group open nothing of the victim's; Redis never holds a token in plain text (a scan of every key and value);
- limits: no credentials means 401 before the body is read; connections, headers and bodies are capped;
- /metrics is not served to anonymous callers.
"""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
import redis

from deployer.routing import changed_channel, routes_key, unpublish_route
from contracts import sealing
from tests.gateway.conftest import METRICS_TOKEN, Routes, call, echo, start_gateway  # noqa: F401 -- fixture

MAX_CONNECTIONS = 6
MAX_HEADER_BYTES = 8192
MAX_HEADERS = 40
MAX_BODY = 1024 * 1024

ATTEMPTS = [
    "another cluster publishes a same-named service over the route",
    "another cluster deletes a same-named service's route",
    "another service's token",
    "a group member of another project calls the group",
    "a member of another project released into a same-named group takes its traffic",
    "a service named like a group takes the group's traffic",
    "an anonymous /metrics read",
    "a /metrics read with a wrong token",
    "a huge body without credentials",
    "a huge body with a wrong token",
    "a declared body over the cap, with the right token",
    "a chunked body over the cap, with the right token",
    "more connections than the cap",
    "an oversized header",
    "too many headers",
    "a header that never ends",
    "a token read from Redis in plain text",
]
TRIED: list[str] = []


def attempt(name: str) -> None:
    assert name in ATTEMPTS
    TRIED.append(name)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    running = start_gateway(tmp_path_factory.mktemp("boundaries"), FERRY_GATEWAY_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
                            FERRY_GATEWAY_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
                            FERRY_GATEWAY_MAX_HEADERS=str(MAX_HEADERS), FERRY_GATEWAY_MAX_BODY_BYTES=str(MAX_BODY))
    yield running
    running.stop()


@pytest.fixture
def routes(gateway):
    table = Routes(gateway)
    yield table
    table.remove_all()


def auth(token: str) -> dict:
    return {"Authorization": token, "Content-Type": "application/json"}


def served_by(gateway, path: str, token: str, count: int = 20):
    """Statuses and the instances that answered `count` calls."""
    statuses, instances = [], []
    for _ in range(count):
        status, _, body = call(gateway, path, headers=auth(token))
        statuses.append(status)
        if status == 200:
            instances.append(json.loads(body)["instance"])
    return statuses, instances


def raw_exchange(gateway, head: bytes, body_chunks=(), read_timeout: float = 10.0, pause: float = 0.0):
    """Sends `head`, then body chunks (`pause` s apart) while the gateway has not answered; (answer, bytes of
    body sent)."""
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=read_timeout)
    sent = 0
    try:
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        for chunk in body_chunks:
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
            if pause:
                time.sleep(pause)
        sock.setblocking(True)
        deadline = time.monotonic() + read_timeout
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            try:
                more = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not more:
                break
            answer += more
        return answer, sent
    finally:
        sock.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


# -- routes keyed by cluster -------------------------------------------------------------------------------------

def test_another_clusters_same_named_service_neither_overwrites_nor_deletes_the_route(gateway, routes, echo):
    backends = echo("victim", "intruder")
    name = routes.unique("shared")
    routes.put(name, [(1, 100, [backends.instance("victim")])])
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    before = client.hget(routes_key("local"), name)

    attempt("another cluster publishes a same-named service over the route")
    key = sealing.route_key()
    other = {**routes.entry(name, [(1, 100, [backends.instance("intruder")])]), "cluster": "edge",
             **sealing.token_fields(key, "intruder-token", "edge", name)}
    client.hset(routes_key("edge"), name, json.dumps(other))
    client.publish(changed_channel("edge"), name)
    client.publish(changed_channel("local"), name)  # even a notice on the local channel reloads the local entry
    time.sleep(0.5)
    assert served_by(gateway, f"/api/predict/{name}", "intruder-token", 3)[0] == [401] * 3
    statuses, instances = served_by(gateway, f"/api/predict/{name}", f"token-of-{name}", 5)
    assert statuses == [200] * 5 and set(instances) == {"victim"}
    assert client.hget(routes_key("local"), name) == before and backends.counts()["intruder"] == 0

    attempt("another cluster deletes a same-named service's route")
    unpublish_route(name, "edge")  # what the control plane does when the edge cluster's service is deleted
    time.sleep(0.5)
    assert client.hget(routes_key("local"), name) == before and client.hget(routes_key("edge"), name) is None
    statuses, instances = served_by(gateway, f"/api/predict/{name}", f"token-of-{name}", 3)
    assert statuses == [200] * 3 and set(instances) == {"victim"}


# -- tokens and groups -------------------------------------------------------------------------------------------

def test_another_services_token_opens_nothing(gateway, routes, echo):
    backends = echo("mine", "theirs")
    mine, theirs = routes.unique("mine"), routes.unique("theirs")
    routes.put(mine, [(1, 100, [backends.instance("mine")])])
    routes.put(theirs, [(1, 100, [backends.instance("theirs")])], project=2)
    attempt("another service's token")
    for path in (f"/api/predict/{mine}", f"/v1/models/{mine}:predict", f"/v2/models/{mine}/infer"):
        status, _, body = call(gateway, path, headers=auth(f"token-of-{theirs}"))
        assert status == 401 and b"wrong token" in body
    assert backends.counts()["mine"] == 0


def test_a_group_serves_only_its_projects_members_and_is_not_shadowed(gateway, routes, echo):
    backends = echo("a1", "a2", "b1", "lookalike")
    group = routes.unique("group")
    a1, a2, b1 = routes.unique("a1"), routes.unique("a2"), routes.unique("b1")
    routes.put(a1, [(1, 100, [backends.instance("a1")])], group=group, traffic_state="grouping", project=1)
    routes.put(a2, [(1, 100, [backends.instance("a2")])], group=group, traffic_state="grouping", project=1)
    path = f"/api/predict/{group}"

    attempt("a group member of another project calls the group")
    routes.put(b1, [(1, 100, [backends.instance("b1")])], group=group, traffic_state="grouping", project=2,
               group_weight=1000)
    statuses, instances = served_by(gateway, path, f"token-of-{b1}", 10)
    # Its token reaches its own project's group (itself), never project 1's members.
    assert statuses == [200] * 10 and set(instances) == {"b1"}

    attempt("a member of another project released into a same-named group takes its traffic")
    statuses, instances = served_by(gateway, path, f"token-of-{a1}", 20)
    assert statuses == [200] * 20 and set(instances) == {"a1", "a2"}
    assert backends.counts()["b1"] == 10  # only its own ten calls

    attempt("a service named like a group takes the group's traffic")
    routes.put(group, [(1, 100, [backends.instance("lookalike")])], project=2)  # a standalone service named so
    statuses, instances = served_by(gateway, path, f"token-of-{a2}", 20)
    assert statuses == [200] * 20 and set(instances) == {"a1", "a2"}
    assert backends.counts()["lookalike"] == 0
    # The service itself stays reachable with its own token, and its token opens nothing of the group.
    assert set(served_by(gateway, path, f"token-of-{group}", 3)[1]) == {"lookalike"}


# -- /metrics ----------------------------------------------------------------------------------------------------

def test_metrics_need_the_metrics_token(gateway, routes, echo, tmp_path):
    backends = echo("counted")
    name = routes.unique("secretive")
    routes.put(name, [(1, 100, [backends.instance("counted")])])
    assert call(gateway, f"/api/predict/{name}", headers=auth(f"token-of-{name}"))[0] == 200

    attempt("an anonymous /metrics read")
    status, _, body = call(gateway, "/metrics", method="GET")
    assert status == 401 and name.encode() not in body
    attempt("a /metrics read with a wrong token")
    for header in ("Bearer not-the-metrics-token", f"token-of-{name}", METRICS_TOKEN):
        status, _, body = call(gateway, "/metrics", method="GET", headers={"Authorization": header})
        assert status == 401 and name.encode() not in body
    assert name in gateway.metrics()  # with the token: served

    unset = start_gateway(tmp_path, FERRY_GATEWAY_METRICS_TOKEN="")
    try:
        status, _, body = call(unset, "/metrics", method="GET", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert status == 404 and b"FERRY_GATEWAY_METRICS_TOKEN" in body
    finally:
        unset.stop()


# -- limits ------------------------------------------------------------------------------------------------------

def test_credentials_are_checked_before_the_body_is_read(gateway, routes, echo):
    backends = echo("big")
    name = routes.unique("big")
    routes.put(name, [(1, 100, [backends.instance("big")])])
    declared = 200 * 1024 * 1024
    chunks = [b"x" * 65536] * (declared // 65536)
    for what, authorization in (("a huge body without credentials", b""),
                                ("a huge body with a wrong token", b"Authorization: not-the-token\r\n")):
        attempt(what)
        head = (f"POST /api/predict/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n".encode()
                + authorization + b"\r\n")
        began = time.monotonic()
        answer, sent = raw_exchange(gateway, head, chunks)
        assert status_of(answer) == 401, answer[:300]
        # Answered long before the client could finish: at most a few socket buffers of the 200 MiB went out.
        assert sent < declared // 4 and time.monotonic() - began < 10, (sent, declared)
    assert backends.counts()["big"] == 0

    attempt("a declared body over the cap, with the right token")
    head = (f"POST /api/predict/{name} HTTP/1.1\r\nHost: x\r\nAuthorization: token-of-{name}\r\n"
            f"Content-Length: {MAX_BODY + 1}\r\n\r\n").encode()
    answer, sent = raw_exchange(gateway, head, [b"x" * 65536] * 17)
    assert status_of(answer) == 413 and b"FERRY_GATEWAY_MAX_BODY_BYTES" in answer
    attempt("a chunked body over the cap, with the right token")
    head = (f"POST /api/predict/{name} HTTP/1.1\r\nHost: x\r\nAuthorization: token-of-{name}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
    answer, _ = raw_exchange(gateway, head, [chunk] * 17 + [b"0\r\n\r\n"])
    assert status_of(answer) == 413
    assert backends.counts()["big"] == 0
    # Within the cap, with the token: served.
    assert call(gateway, f"/api/predict/{name}", body=b"x" * (MAX_BODY - 1), headers=auth(f"token-of-{name}"))[0] == 200


def test_connections_beyond_the_cap_are_refused(gateway):
    attempt("more connections than the cap")
    time.sleep(2.5)  # connections refused by earlier tests linger up to 2 s (gateway/server.py LINGER)
    held = [socket.create_connection(("127.0.0.1", gateway.port), timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
        answer = extra.recv(4096)
        extra.close()
        assert status_of(answer) == 503 and b"FERRY_GATEWAY_MAX_CONNECTIONS" in answer
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert call(gateway, "/healthz", method="GET")[0] == 200  # room again once they closed


def test_oversized_headers_are_refused(gateway, routes, echo):
    backends = echo("headers")
    name = routes.unique("headers")
    routes.put(name, [(1, 100, [backends.instance("headers")])])
    start = f"POST /api/predict/{name} HTTP/1.1\r\nHost: x\r\nAuthorization: token-of-{name}\r\n".encode()

    attempt("an oversized header")
    answer, _ = raw_exchange(gateway, start + b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\n")
    assert status_of(answer) == 431
    attempt("too many headers")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    answer, _ = raw_exchange(gateway, start + many + b"\r\n")
    assert status_of(answer) == 431
    attempt("a header that never ends")
    answer, sent = raw_exchange(gateway, start + b"X-Endless: ", [b"a" * 1024] * 200, pause=0.01)
    assert status_of(answer) == 431 and sent < 100 * 1024
    assert backends.counts()["headers"] == 0


# -- Redis holds no token in plain text --------------------------------------------------------------------------

def every_value(client: redis.Redis) -> list[bytes]:
    values = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        values.append(key)
        if kind == b"string":
            values.append(client.get(key) or b"")
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                values += [field, value]
        elif kind == b"list":
            values += client.lrange(key, 0, -1)
        elif kind == b"set":
            values += list(client.smembers(key))
        elif kind == b"zset":
            values += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
    return values


@pytest.mark.django_db
def test_redis_never_holds_a_service_token_in_plain_text(gateway, routes, echo):
    """The control plane's own publish (a reconcile) and the gateway's own writes (metrics, activations)."""
    from deployer.reconcile import reconcile
    from services.models import Project
    from services.selectors import service_token
    from services.writes import service_create

    backends = echo("scanned")
    name = routes.unique("scanned")
    routes.put(name, [(1, 100, [backends.instance("scanned")])])
    assert call(gateway, f"/api/predict/{name}", headers=auth(f"token-of-{name}"))[0] == 200
    document = {"name": routes.unique("published"), "processor": "custom",
                "containers": [{"image": "none", "script": "sleep 600", "port": 8000}]}
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
    reconcile(service.pk)  # publishes its route, as after every reconcile
    token = service_token(service)
    service.refresh_from_db()
    routes.wait_applied(service.name, service.generation)  # the gateway opened its sealed token
    time.sleep(1.5)  # a metrics flush

    attempt("a token read from Redis in plain text")
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    values = every_value(client)
    assert values, "Redis was empty: the scan proves nothing"
    for secret in (token, f"token-of-{name}"):
        assert not any(secret.encode() in value for value in values), f"a token in plain text in Redis: {secret}"
    entry = json.loads(client.hget(routes_key("local"), service.name))
    assert "token" not in entry and entry["token_sealed"] and entry["token_digest"]
    client.hdel(routes_key("local"), service.name)


def test_every_attempt_was_tried_and_none_succeeded():
    """Runs last in this module: the count for docs/security.md (each attempt's test asserted its failure)."""
    assert sorted(set(TRIED)) == sorted(ATTEMPTS), set(ATTEMPTS) - set(TRIED)
    print(f"gateway boundaries: {len(ATTEMPTS)} attempts tried, 0 succeeded")
