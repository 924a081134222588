"""The activator in the gateway: a request for a service with no ready instance is held (bounded queue,
deadline), `deployer.activate_service` is enqueued at once, and the request goes through when an instance
appears in the routing table. The control plane's side runs for real in test_clients.py."""

import base64
import json
import os
import threading
import time

import redis

from tests.agent.kit import wait_for

from .conftest import Routes, call, start_gateway

BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


def activation_messages(client, name: str) -> list[tuple[bytes, dict]]:
    found = []
    for raw in client.lrange("celery", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "deployer.activate_service":
            args = json.loads(base64.b64decode(message["body"]))[0]
            if args[0] == name:
                found.append((raw, message | {"args": args}))
    return found


def queue_length(gateway, name: str) -> float:
    prefix = f'ferry_gateway_queue_length{{service="{name}",'
    return sum(float(line.rsplit(" ", 1)[1]) for line in gateway.metrics().splitlines() if line.startswith(prefix))


def test_it_holds_a_request_for_a_service_at_zero_and_asks_for_instances_at_once(gateway, routes, echo):
    backends = echo("woken")
    name = routes.unique()
    routes.put(name, [(1, 100, [])], scale_to_zero=True, max_queue_size=2)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    answers = []

    def held():
        began = time.monotonic()
        status, headers, body = call(gateway, f"/api/predict/{name}", body=BODY,
                                     headers={"Authorization": f"token-of-{name}"})
        answers.append((status, body, time.monotonic() - began))

    waiting = [threading.Thread(target=held) for _ in range(2)]
    for thread in waiting:
        thread.start()
    try:
        deadline = time.monotonic() + 10
        while not activation_messages(client, name) and time.monotonic() < deadline:
            time.sleep(0.01)
        messages = activation_messages(client, name)
        assert len(messages) == 1, "one scale-up signal per second per service, sent at once"
        raw, message = messages[0]
        assert message["args"] == [name, "local"] and message["properties"]["delivery_info"]["routing_key"] == "celery"
        # A third request finds the queue (2) full, once both held requests are in it.
        wait_for(lambda: queue_length(gateway, name) == 2, what="both held requests in the queue")
        status, headers, body = call(gateway, f"/api/predict/{name}", body=BODY,
                                     headers={"Authorization": f"token-of-{name}"})
        assert status == 503 and headers["retry-after"] == "1" and b"queue" in body
        time.sleep(0.3)
        assert not answers, "held requests wait for an instance"
        routes.put(name, [(1, 100, [backends.instance("woken")])], scale_to_zero=True)
        for thread in waiting:
            thread.join(5)
    finally:
        for raw, _ in activation_messages(client, name):
            client.lrem("celery", 0, raw)
    assert [status for status, *_ in answers] == [200, 200], answers
    assert all(b'"instance": "woken"' in body and took > 0.3 for _, body, took in answers)
    assert f'ferry_gateway_cold_starts_total{{service="{name}",version="1"}} 2.0' in gateway.metrics()


def test_it_answers_503_with_retry_after_when_activation_takes_longer_than_the_deadline(tmp_path):
    impatient = start_gateway(tmp_path, FERRY_GATEWAY_ACTIVATION_TIMEOUT="0.5")
    routes = Routes(impatient)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        name = routes.unique()
        routes.put(name, [(1, 100, [])], scale_to_zero=True, timeout_ms=200)
        began = time.monotonic()
        status, headers, body = call(impatient, f"/api/predict/{name}", body=BODY,
                                     headers={"Authorization": f"token-of-{name}"})
        took = time.monotonic() - began
        assert status == 503 and headers["retry-after"] == "2" and b"no ready instance" in body
        assert 0.45 < took < 2.0, took
        stopped = routes.unique()
        routes.put(stopped, [(1, 100, [])], running=False)
        status, _, body = call(impatient, f"/api/predict/{stopped}", body=BODY,
                               headers={"Authorization": f"token-of-{stopped}"})
        assert status == 503 and b"is stopped" in body
    finally:
        impatient.stop()
        routes.remove_all()
        for name in routes.names:
            for raw, _ in activation_messages(client, name):
                client.lrem("celery", 0, raw)


def test_it_answers_at_once_with_the_reason_when_the_wake_up_failed(gateway, routes):
    name = routes.unique()
    why = "No instance became ready within 300 s of its wake-up from zero"
    routes.put(name, [(1, 100, [])], scale_to_zero=True, failed=why)
    began = time.monotonic()
    status, _, body = call(gateway, f"/api/predict/{name}", headers={"Authorization": f"token-of-{name}"})
    assert status == 503 and time.monotonic() - began < 2
    assert why in body.decode()
