"""LLM-aware routing in the gateway, against real processes: instances that report an engine's load on /metrics
(engine_metrics_server.py, the text set by the test), the gateway scraping them, routing by that load with
prefix affinity, writing the load to Redis; and an LLM route's own activation deadline."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import sys
import threading
import time
from collections import Counter

import pytest
import redis

from contracts.engine_load import ENGINE_LOAD_TTL, EngineLoad, engine_load_key
from tests.agent.kit import wait_for
from tests.harness.process import free_port, spawn

from .conftest import HERE, REPO, Routes, call, run_coroutine, start_gateway
from .test_activator import activation_messages


def vllm_metrics(waiting: float = 0, running: float = 0, kv_cache: float = 0.0) -> bytes:
    return (f'vllm:num_requests_running{{engine="0",model_name="chat"}} {running}\n'
            f'vllm:num_requests_waiting{{engine="0",model_name="chat"}} {waiting}\n'
            f'vllm:kv_cache_usage_perc{{engine="0",model_name="chat"}} {kv_cache}\n').encode()


class Engines:
    """Instances whose /metrics says what the test sets."""

    def __init__(self, tmp_path, names):
        self.addresses = {name: f"127.0.0.1:{free_port()}" for name in names}
        self.log = tmp_path / "engines.log"
        specs = [f"{n}:{a.rpartition(':')[2]}" for n, a in self.addresses.items()]
        self.popen = spawn([sys.executable, str(HERE / "engine_metrics_server.py"), *specs], log=self.log, cwd=REPO,
                           death_signal=signal.SIGKILL)
        wait_for(lambda: "ready" in self.log.read_text(), what="the engine stand-ins to listen")

    def report(self, name: str, **load) -> None:
        host, _, port = self.addresses[name].rpartition(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            connection.request("PUT", "/_metrics", body=vllm_metrics(**load))
            connection.getresponse().read()
        finally:
            connection.close()

    def instances(self) -> list[dict]:
        return [{"name": name, "address": address} for name, address in self.addresses.items()]

    def stop(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(5)


@pytest.fixture
def engines(tmp_path):
    started = []

    def start(*names):
        started.append(Engines(tmp_path, names))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def chat(system: str, user: str) -> bytes:
    return json.dumps({"model": "chat", "messages": [{"role": "system", "content": system},
                                                     {"role": "user", "content": user}], "max_tokens": 8}).encode()


def send(gateway, name: str, body: bytes) -> str:
    status, headers, answer = call(gateway, f"/api/predict/{name}/v1/chat/completions", body=body,
                                   headers={"Authorization": f"token-of-{name}", "Content-Type": "application/json"})
    assert status == 200, answer
    return headers["x-instance"]


def loads_in_redis(name: str) -> dict[str, EngineLoad]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return {field.decode(): EngineLoad.from_json(value)
            for field, value in client.hgetall(engine_load_key("local", name)).items()}


def test_it_routes_an_llm_service_away_from_the_engine_with_a_long_queue(gateway, routes, engines):
    backends = engines("busy", "idle")
    backends.report("busy", waiting=40, running=8, kv_cache=0.5)
    backends.report("idle", waiting=0, running=1, kv_cache=0.1)
    name = routes.unique("llm")
    routes.put(name, [(1, 100, backends.instances())], llm=True)
    wait_for(lambda: loads_in_redis(name).get("busy", EngineLoad()).waiting == 40, what="the busy engine scraped")
    # Another gateway of the suite may have written the hash before this one scraped: its first choices wait for
    # its own scrape (every 0.5 s).
    wait_for(lambda: {send(gateway, name, chat(f"probe {n}", "hello")) for n in range(4)} == {"idle"},
             what="the gateway to read the busy engine's queue")
    # Every request, whatever its prompt (its prefix may prefer the busy one), goes to the idle engine.
    served = Counter(send(gateway, name, chat(f"system prompt {n}", "hello")) for n in range(12))
    assert served == Counter({"idle": 12})

    # The queue drains: the next scrape sees it, and requests go to both again.
    backends.report("busy", waiting=0, running=1, kv_cache=0.1)
    wait_for(lambda: loads_in_redis(name)["busy"].waiting == 0, what="the drained engine scraped")
    served = Counter(send(gateway, name, chat(f"system prompt {n}", "hello")) for n in range(40))
    assert set(served) == {"busy", "idle"}, served


def test_requests_sharing_a_system_prompt_stay_on_one_engine(gateway, routes, engines):
    backends = engines("e0", "e1", "e2")
    for engine in ("e0", "e1", "e2"):
        backends.report(engine, waiting=0, running=0, kv_cache=0.05)
    name = routes.unique("llm")
    routes.put(name, [(1, 100, backends.instances())], llm=True)
    wait_for(lambda: len(loads_in_redis(name)) == 3, what="the three engines scraped")
    system = "You answer questions about the Ferry control plane, briefly and precisely."
    # Requests at once (the first keeps its slot while the others arrive): the bound allows QUEUE_SLACK more.
    served: Counter = Counter()
    lock = threading.Lock()

    def one(n):
        instance = send(gateway, name, chat(system, f"question {n}"))
        with lock:
            served[instance] += 1

    for n in range(15):
        one(n)
    threads = [threading.Thread(target=one, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(served) == 1 and sum(served.values()) == 17, served
    # Other system prompts spread over the engines.
    others = Counter(send(gateway, name, chat(f"You are assistant number {n}.", "hi")) for n in range(30))
    assert len(others) == 3, others


def test_the_engines_load_is_written_to_redis_per_instance(gateway, routes, engines):
    backends = engines("a", "b")
    backends.report("a", waiting=3, running=2, kv_cache=0.25)
    backends.report("b", waiting=0, running=0, kv_cache=0.0)
    name = routes.unique("llm")
    routes.put(name, [(1, 100, backends.instances())], llm=True)
    loads = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(loads_in_redis(name)),
                     what="both instances' load in Redis")
    assert (loads["a"].waiting, loads["a"].running, loads["a"].kv_cache) == (3.0, 2.0, 0.25)
    assert loads["b"].waiting == 0.0 and loads["a"].at > time.time() - 60
    ttl = redis.Redis.from_url(os.environ["REDIS_URL"]).ttl(engine_load_key("local", name))
    assert 0 < ttl <= ENGINE_LOAD_TTL
    # An instance that leaves the route leaves the hash; a service that is not an LLM is not scraped.
    routes.put(name, [(1, 100, [backends.instances()[0]])], llm=True)
    wait_for(lambda: set(loads_in_redis(name)) == {"a"}, what="b gone from the hash")
    plain = routes.unique()
    routes.put(plain, [(1, 100, backends.instances())])
    for _ in range(2):  # two scrape rounds after the plain service was routed
        scraped = loads_in_redis(name)["a"].at
        wait_for(lambda: loads_in_redis(name)["a"].at > scraped, what="another scrape round")
    assert loads_in_redis(plain) == {}


def test_with_llm_routing_off_an_llm_service_gets_least_outstanding(tmp_path, engines):
    plain = start_gateway(tmp_path, FERRY_GATEWAY_LLM_ROUTING="false")
    table = Routes(plain)
    try:
        backends = engines("busy", "idle")
        backends.report("busy", waiting=40)
        name = table.unique("llm")
        table.put(name, [(1, 100, backends.instances())], llm=True)
        wait_for(lambda: loads_in_redis(name).get("busy", EngineLoad()).waiting == 40, what="the load scraped")
        served = Counter(send(plain, name, chat("one shared system prompt", f"q{n}")) for n in range(10))
        assert served == Counter({"busy": 5, "idle": 5}), "one at a time: ties take turns, load ignored"
    finally:
        table.remove_all()
        plain.stop()


def test_an_llm_route_holds_requests_for_its_own_activation_deadline(tmp_path, engines):
    impatient = start_gateway(tmp_path, FERRY_GATEWAY_ACTIVATION_TIMEOUT="0.3")
    table = Routes(impatient)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        backends = engines("late")
        name = table.unique("llm")
        table.put(name, [(1, 100, [])], llm=True, scale_to_zero=True, timeout_ms=200,
                  activation_timeout_ms=60_000)
        answers = []
        waiting = threading.Thread(target=lambda: answers.append(
            call(impatient, f"/api/predict/{name}/v1/chat/completions", body=chat("s", "u"),
                 headers={"Authorization": f"token-of-{name}"}, timeout=30)))
        waiting.start()
        wait_for(lambda: activation_messages(client, name), what="the activation signal")
        # Held past the gateway's own deadline (0.3 s), by the route's (60 s), until an engine is ready.
        waiting.join(1.0)
        assert not answers, answers
        table.put(name, [(1, 100, backends.instances())], llm=True, scale_to_zero=True, timeout_ms=200,
                  activation_timeout_ms=60_000)
        waiting.join(10)
        assert answers and answers[0][0] == 200 and answers[0][1]["x-instance"] == "late", answers
        # The same route without its own deadline gets the gateway's: 503 after 0.3 s.
        other = table.unique("llm")
        table.put(other, [(1, 100, [])], llm=True, scale_to_zero=True, timeout_ms=200)
        status, headers, body = call(impatient, f"/api/predict/{other}", body=b"{}",
                                     headers={"Authorization": f"token-of-{other}"})
        assert status == 503 and b"no ready instance" in body
    finally:
        table.remove_all()
        impatient.stop()
        for name in table.names:
            for raw, _ in activation_messages(client, name):
                client.lrem("celery", 0, raw)


def test_a_scrape_is_bounded_and_reads_only_a_whole_200_answer():
    from gateway.engines import fetch_metrics

    async def serve(answer: bytes | None):
        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            if answer is None:
                await asyncio.sleep(30)  # an engine that never answers
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await fetch_metrics("127.0.0.1", port, timeout=0.3)
        finally:
            server.close()

    text = vllm_metrics(waiting=3).decode()
    framed = f"HTTP/1.1 200 OK\r\nContent-Length: {len(text)}\r\n\r\n{text}".encode()
    assert run_coroutine(serve(framed)) == text
    assert run_coroutine(serve(f"HTTP/1.0 200 OK\r\n\r\n{text}".encode())) == text  # ends with the connection
    assert run_coroutine(serve(b"HTTP/1.1 500 X\r\nContent-Length: 2\r\n\r\nno")) is None
    assert run_coroutine(serve(b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\ncut")) is None
    assert run_coroutine(serve(None)) is None
