"""Asynchronous services (docs/async.md) through the official QueueClient (eas-prediction, in its own venv):
a real gateway, real instances (queue_worker.py), the queues in the harness's Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
import redis

from contracts.keys import QUEUE_GROUP, complete_key, queue_key
from tests.gateway.conftest import HERE, REPO, Routes, start_gateway
from tests.harness.process import free_port, spawn, stop
from tests.harness.redis import find_redis_server


def queue(python, gateway, token: str, *operations: dict, timeout: float = 120) -> list:
    done = subprocess.run([str(python), str(HERE / "eas_queue_client.py"), gateway.url, token,
                           json.dumps(list(operations))], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


class Worker:
    def __init__(self, name: str, popen, port: int):
        self.name, self.popen, self.port = name, popen, port
        self.address = f"127.0.0.1:{port}"

    def received(self) -> list[str]:
        with urllib.request.urlopen(f"http://{self.address}/_count", timeout=5) as response:
            return json.loads(response.read())["bodies"]

    def instance(self) -> dict:
        return {"name": self.name, "address": self.address}


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def start(name: str) -> Worker:
        port = free_port()
        log = tmp_path / f"{name}.log"
        popen = spawn([sys.executable, str(HERE / "queue_worker.py"), name, str(port)], log=log, cwd=REPO,
                      death_signal=signal.SIGKILL)
        worker = Worker(name, popen, port)
        started.append(worker)
        deadline = time.monotonic() + 15
        while "ready" not in (log.read_text() if log.exists() else ""):
            assert popen.poll() is None and time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.02)
        return worker

    yield start
    for worker in started:
        stop(worker.popen, signal.SIGKILL)


def async_service(routes, instances, max_length: int = 1000, concurrency: int = 2) -> str:
    name = routes.unique("aq")
    routes.put(name, [(1, 100, instances)], instance_concurrency=concurrency,
               queue={"max_length": max_length, "max_payload_bytes": 1024, "sink_max_length": 1000})
    return name


def wait_until(condition, timeout: float = 20.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_requests_put_come_back_in_the_sink(gateway, routes, workers, eas_python):
    worker = workers("w1")
    name = async_service(routes, [worker.instance()])
    token = f"token-of-{name}"
    put, = queue(eas_python, gateway, token, {"op": "put", "queue": name, "data": "job-{i}", "count": 10,
                                              "tags": {"batch": "b1"}})
    assert isinstance(put, list), put
    indexes = [int(index) for index, _ in put]
    assert indexes == sorted(indexes) and len(set(indexes)) == 10  # an index at once, growing
    results, sink_attributes, input_attributes = queue(
        eas_python, gateway, token,
        {"op": "watch", "queue": f"{name}/sink", "count": 10, "window": 3, "commit": True},
        {"op": "attributes", "queue": f"{name}/sink"}, {"op": "attributes", "queue": name})
    by_request = {rid: int(index) for index, rid in put}
    assert sorted(json.loads(r["data"])["body"] for r in results) == sorted(f"job-{i}" for i in range(10))
    for result in results:
        tags = result["tags"]
        assert tags["batch"] == "b1" and tags["lastCode"] == "200"
        assert by_request[tags["requestId"]] == int(tags["source.index"])  # tied to its request
        assert json.loads(result["data"])["body"] == f"job-{indexes.index(int(tags['source.index']))}"
    assert sink_attributes["stream.length"] == "0"  # all committed
    assert input_attributes["stream.length"] == "0" and int(input_attributes["stream.lastEntry"]) == indexes[-1]


def test_a_streamed_answer_goes_to_the_sink_whole(gateway, routes, workers, eas_python):
    worker = workers("w1")
    name = async_service(routes, [worker.instance()], concurrency=1)
    token = f"token-of-{name}"
    queue(eas_python, gateway, token, {"op": "put", "queue": name, "data": "chunked;a", "count": 3})
    results, = queue(eas_python, gateway, token, {"op": "watch", "queue": f"{name}/sink", "count": 3,
                                                  "auto_commit": True})
    assert [json.loads(r["data"]) for r in results] == [{"instance": "w1", "body": "chunked;a"}] * 3
    assert [r["tags"]["lastCode"] for r in results] == ["200"] * 3  # one slot: each freed when its stream ended


def test_queue_operations_and_back_pressure(gateway, routes, eas_python):
    name = async_service(routes, [], max_length=3)  # no instance: the input keeps what it gets
    token = f"token-of-{name}"
    sink = f"{name}/sink"
    put, full, attributes, search, waiting = queue(
        eas_python, gateway, token,
        {"op": "put", "queue": name, "data": "a", "count": 3}, {"op": "put", "queue": name, "data": "b"},
        {"op": "attributes", "queue": name}, {"op": "search", "queue": name, "index": 0},
        {"op": "search", "queue": name, "index": 3})
    assert [int(i) for i, _ in put] == [1, 2, 3]
    assert full["error"][0] == 429 and "full" in full["error"][1]  # back-pressure
    assert attributes["stream.length"] == "3" and attributes["stream.maxLength"] == "3"
    assert search == {}  # an index the client refuses itself
    assert waiting == {"IsPending": False, "WaitHeadQueueLength": 2}
    results = queue(eas_python, gateway, token,
                    {"op": "put", "queue": sink, "data": "r{i}", "count": 5, "tags": {"kind": "x"}},
                    {"op": "put", "queue": sink, "data": "other", "tags": {"kind": "y"}},
                    {"op": "get", "queue": sink, "index": 2, "length": 2, "auto_delete": False},
                    {"op": "get", "queue": sink, "tags": {"kind": "y"}, "auto_delete": False},
                    {"op": "commit", "queue": sink, "indexes": [1]},
                    {"op": "delete", "queue": sink, "indexes": [2]},
                    {"op": "attributes", "queue": sink},
                    {"op": "truncate", "queue": sink, "index": 5},
                    {"op": "get", "queue": sink, "length": 10, "auto_delete": True},
                    {"op": "attributes", "queue": sink})
    sink_put, other, two, tagged, _, _, after_delete, _, rest, emptied = results
    assert [r["data"] for r in two] == ["r1", "r2"] and [r["index"] for r in two] == [2, 3]
    assert [r["data"] for r in tagged] == ["other"] and tagged[0]["tags"]["kind"] == "y"
    assert after_delete["stream.length"] == "4"  # 6 put, 1 committed, 1 deleted
    assert [r["data"] for r in rest] == ["r4", "other"]  # truncate dropped those below index 5
    assert emptied["stream.length"] == "0"  # auto_delete took them
    by_id, = queue(eas_python, gateway, token, {"op": "put", "queue": sink, "data": "mine"})
    found, = queue(eas_python, gateway, token, {"op": "get", "queue": sink, "request_id": by_id[0][1]})
    assert [r["data"] for r in found] == ["mine"]
    too_big, = queue(eas_python, gateway, token, {"op": "put", "queue": sink, "data": "x" * 2000})
    assert too_big["error"][0] == 413


def test_an_instance_killed_mid_request_has_its_entry_delivered_again(gateway, routes, workers, eas_python):
    first, second = workers("first"), workers("second")
    name = async_service(routes, [first.instance(), second.instance()], concurrency=1)
    token = f"token-of-{name}"
    queue(eas_python, gateway, token, {"op": "put", "queue": name, "data": "sleep:3;job"})
    took = wait_until(lambda: [w for w in (first, second) if w.received()], what="an instance to get the entry")[0]
    survivor = second if took is first else first
    stop(took.popen, signal.SIGKILL)  # dies mid-request
    result, = queue(eas_python, gateway, token, {"op": "watch", "queue": f"{name}/sink", "count": 1,
                                                 "auto_commit": True})
    answer = json.loads(result[0]["data"])
    assert answer == {"instance": survivor.name, "body": "sleep:3;job"}


def test_a_gateway_killed_mid_way_loses_nothing(tmp_path, gateway, routes, workers, eas_python):
    worker = workers("w1")
    name = async_service(routes, [worker.instance()], concurrency=2)
    token = f"token-of-{name}"
    consumer = f"test-{uuid.uuid4().hex[:8]}"
    own = start_gateway(tmp_path, FERRY_GATEWAY_QUEUE_CONSUMER=consumer)
    store = redis.Redis.from_url(os.environ["REDIS_URL"])
    key = queue_key("local", name)
    try:
        queue(eas_python, own, token, {"op": "put", "queue": name, "data": "sleep:0.3;job-{i}", "count": 20})

        def held() -> int:
            return sum(c["pending"] for c in store.xinfo_consumers(key, QUEUE_GROUP) if c["name"].decode() == consumer)
        wait_until(lambda: held() >= 2, what="the gateway to hold entries")
        own.stop(signal.SIGKILL)  # entries in its hands, unanswered
        assert held() >= 2
        # Fewer slots than it held: the restarted gateway takes them back over several rounds, all at once
        # (not after FERRY_GATEWAY_QUEUE_CLAIM_IDLE, 60 s, which would outlast the watch below).
        routes.put(name, [(1, 100, [worker.instance()])], instance_concurrency=1,
                   queue={"max_length": 1000, "max_payload_bytes": 1024, "sink_max_length": 1000})
        own = start_gateway(tmp_path, FERRY_GATEWAY_QUEUE_CONSUMER=consumer)
        results, = queue(eas_python, own, token, {"op": "watch", "queue": f"{name}/sink", "count": 20,
                                                  "auto_commit": True, "window": 20}, timeout=40)
    finally:
        own.stop(signal.SIGKILL)
    assert sorted(json.loads(r["data"])["body"] for r in results) == sorted(f"sleep:0.3;job-{i}" for i in range(20))
    assert store.xlen(key) == 0  # every entry answered and removed from the input


def start_redis(directory, port: int, password: str):
    """A Redis with the append-only file on, as scripts/redis-server runs it (appendfsync everysec)."""
    directory.mkdir(exist_ok=True)
    config = directory / "redis.conf"
    config.write_text(f"requirepass {password}\n")
    popen = spawn([find_redis_server(), str(config), "--port", str(port), "--bind", "127.0.0.1", "--dir",
                   str(directory), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                   "--daemonize", "no"], log=directory / "redis.log", cwd=directory, death_signal=signal.SIGKILL)
    client = redis.Redis(port=port, password=password)

    def answers():
        try:
            return client.ping()
        except redis.RedisError:
            assert popen.poll() is None, (directory / "redis.log").read_text()
            return False
    wait_until(answers, what="Redis to answer")
    return popen, client


def test_accepted_requests_survive_a_restart_of_redis(tmp_path, routes, workers, eas_python):
    port, password = free_port(), uuid.uuid4().hex
    popen, store = start_redis(tmp_path / "redis", port, password)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    own = start_gateway(tmp_path, REDIS_URL=url, FERRY_GATEWAY_RESYNC_INTERVAL="1")
    mine = Routes(own)
    mine.redis = store
    try:
        name = mine.unique("aq")
        queue_settings = {"max_length": 100, "max_payload_bytes": 1024, "sink_max_length": 100}
        mine.put(name, [(1, 100, [])], queue=queue_settings)  # no instance yet: the requests wait in Redis
        token = f"token-of-{name}"
        queue(eas_python, own, token, {"op": "put", "queue": name, "data": "job-{i}", "count": 10})
        stop(popen, signal.SIGTERM)  # a clean restart: Redis writes what it holds
        popen, store = start_redis(tmp_path / "redis", port, password)
        assert store.xlen(queue_key("local", name)) == 10
        worker = workers("w1")
        mine.redis = store
        # As the control plane does after a Redis restart (deployer/routing.py): the whole table, marked complete.
        store.set(complete_key("local"), store.info("server")["run_id"])
        mine.put(name, [(1, 100, [worker.instance()])], queue=queue_settings)
        results, = queue(eas_python, own, token, {"op": "watch", "queue": f"{name}/sink", "count": 10,
                                                  "auto_commit": True, "window": 10})
        assert sorted(json.loads(r["data"])["body"] for r in results) == sorted(f"job-{i}" for i in range(10))
        more, = queue(eas_python, own, token, {"op": "put", "queue": name, "data": "after"})
        assert int(more[0][0]) == 11  # indexes go on from where they were
    finally:
        own.stop(signal.SIGKILL)
        stop(popen, signal.SIGKILL)


def test_a_request_put_while_the_service_is_at_zero_wakes_it(gateway, routes, workers, eas_python):
    from tests.gateway.test_activator import activation_messages

    name = routes.unique("aq")
    queue_settings = {"max_length": 100, "max_payload_bytes": 1024, "sink_max_length": 100}
    routes.put(name, [(1, 100, [])], scale_to_zero=True, queue=queue_settings)
    token = f"token-of-{name}"
    store = redis.Redis.from_url(os.environ["REDIS_URL"])
    put, = queue(eas_python, gateway, token, {"op": "put", "queue": name, "data": "wake"})
    assert int(put[0][0]) == 1  # accepted at once, at zero
    try:
        messages = wait_until(lambda: activation_messages(store, name), what="an activation request")
        assert messages[0][1]["args"] == [name, "local"]
    finally:
        for raw, _ in activation_messages(store, name):
            store.lrem("celery", 0, raw)
    worker = workers("w1")  # the control plane started an instance
    routes.put(name, [(1, 100, [worker.instance()])], scale_to_zero=True, queue=queue_settings)
    result = wait_until(lambda: queue(eas_python, gateway, token, {"op": "get", "queue": f"{name}/sink",
                                                                   "request_id": put[0][1], "timeout": "2s"})[0],
                        what="the result")  # get waits up to 2 s for it; the client's own timeout is 5 s
    assert json.loads(result[0]["data"])["body"] == "wake"


def test_a_websocket_upgrade_is_refused_except_for_a_queue_watch(gateway, routes, workers):
    import socket

    worker = workers("w1")
    name = routes.unique("sync")
    routes.put(name, [(1, 100, [worker.instance()])])  # a synchronous service
    request = (f"GET /api/predict/{name}?_watch_=true HTTP/1.1\r\nHost: x\r\nAuthorization: token-of-{name}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096) or b"\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 400") and worker.received() == []
    queued = async_service(routes, [])
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(request.replace(name.encode(), queued.encode()))
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096) or b"\r\n\r\n"
    # RFC 6455's example key and its accept value
    assert answer.startswith(b"HTTP/1.1 101") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in answer
