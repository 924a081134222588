"""Pool models (the model mesh) through a running gateway: a pool service's instances serve many small models,
each version loaded under its key `<service>-v<n>`. The gateway sends a pool model's calls to the pool's
instances with the path naming the key and the pool's token, while the client presents the model's own token;
the pool's instances are one set of objects for all its models (least outstanding sees the whole pool's load);
a version not loaded yet is held while the control plane loads it. The instances are echo.py processes, which
answer the path and Authorization they got."""

import json
import os
import threading

import pytest
import redis

from contracts import sealing
from gateway.table import RouteTable
from tests.agent.kit import wait_for

from .conftest import call, run_coroutine
from .test_activator import activation_messages, queue_length


def model_entry(routes, name: str, pool: str, versions, **fields) -> dict:
    """A pool model's entry as the control plane publishes it: its own token, the pool's sealed for upstream,
    versions (number, weight, instances) served under `<name>-v<number>`."""
    published = routes.entry(name, [], pool=pool, **fields,
                             **sealing.upstream_token_fields(sealing.route_key(), f"token-of-{pool}", "local", name))
    published["versions"] = [{"number": n, "weight": w, "instances": list(i), "model": f"{name}-v{n}"}
                             for n, w, i in versions]
    return published


def answer(status, body) -> dict:
    assert status == 200, body
    return json.loads(body)


@pytest.fixture
def mesh(routes, echo):
    """A pool on instances A and B; m1 loaded on A (versions 1 and 2, 2 taking the traffic), m2 on A and B."""
    backends = echo("A", "B")
    pool, m1, m2 = routes.unique("pool"), routes.unique("m"), routes.unique("m")
    a, b = backends.instance("A"), backends.instance("B")
    # The models first: the order entries arrive in must not matter.
    routes.publish(model_entry(routes, m1, pool, [(1, 0, [a]), (2, 100, [a])]))
    routes.publish(model_entry(routes, m2, pool, [(1, 100, [a, b])]))
    routes.put(pool, [(1, 100, [a, b])])
    return backends, pool, m1, m2


def test_a_pool_models_calls_name_its_key_on_every_protocol_and_carry_the_pools_token(gateway, mesh):
    backends, pool, m1, _ = mesh
    own = {"Authorization": f"token-of-{m1}"}
    cases = {
        f"/api/predict/{m1}": f"/api/predict/{m1}-v2",
        f"/api/predict/{m1}/extra/part": f"/api/predict/{m1}-v2/extra/part",
        f"/v1/models/{m1}:predict": f"/v1/models/{m1}-v2:predict",
        f"/v2/models/{m1}/infer": f"/v2/models/{m1}-v2/infer",
        f"/v2/models/{m1}/versions/1/infer": f"/v2/models/{m1}-v1/infer",  # pinned: that version's key
    }
    for path, upstream in cases.items():
        got = answer(*call(gateway, path, headers=own)[::2])
        assert (got["path"], got["instance"]) == (upstream, "A"), path
        assert got["authorization"] == f"token-of-{pool}", "the pool's instances check the pool's token"
    # Ferry-Version pins too; the server-level V2 paths (health, metadata) go to the pool's server unchanged.
    got = answer(*call(gateway, f"/api/predict/{m1}", headers={**own, "Ferry-Version": "1"})[::2])
    assert got["path"] == f"/api/predict/{m1}-v1"
    got = answer(*call(gateway, "/v2/health/ready", method="GET", headers={**own, "model": m1})[::2])
    assert got["path"] == "/v2/health/ready" and got["authorization"] == f"token-of-{pool}"


def test_a_pool_model_lists_no_instance_for_direct_connection(gateway, mesh):
    _, pool, m1, _ = mesh
    status, _, body = call(gateway, f"/api/v1/servicediscovery/upstreams/{m1}", method="GET")
    assert status == 200 and json.loads(body)["endpoints"]["items"] == []  # they would refuse its name and token
    status, _, body = call(gateway, f"/api/v1/servicediscovery/upstreams/{pool}", method="GET")
    assert len(json.loads(body)["endpoints"]["items"]) == 2


def test_a_client_must_present_the_models_own_token_not_the_pools(gateway, mesh):
    _, pool, m1, _ = mesh
    status, _, body = call(gateway, f"/api/predict/{m1}", headers={"Authorization": f"token-of-{pool}"})
    assert status == 401, body
    status, _, body = call(gateway, f"/api/predict/{m1}", headers={"Authorization": f"Bearer token-of-{pool}"})
    assert status == 401, body
    # The pool itself is an ordinary service: its own token, its own path, unchanged.
    got = answer(*call(gateway, f"/api/predict/{pool}", headers={"Authorization": f"token-of-{pool}"})[::2])
    assert got["path"] == "/" and got["authorization"] == f"token-of-{pool}"


def test_a_slow_request_of_one_model_steers_another_models_requests_to_the_other_instance(gateway, mesh):
    backends, _, m1, m2 = mesh
    before = backends.counts()["A"]
    slow = []
    thread = threading.Thread(target=lambda: slow.append(call(
        gateway, f"/api/predict/{m1}?sleep=3", headers={"Authorization": f"token-of-{m1}"})))
    thread.start()
    try:
        wait_for(lambda: backends.counts()["A"] > before, what="m1's slow request to reach instance A")
        served = [answer(*call(gateway, f"/api/predict/{m2}", headers={"Authorization": f"token-of-{m2}"})[::2])
                  for _ in range(8)]
    finally:
        thread.join(10)
    # A has m1's request outstanding, B nothing: every m2 request goes to B (apart, ties would alternate).
    assert [got["instance"] for got in served] == ["B"] * 8
    assert {got["path"] for got in served} == {f"/api/predict/{m2}-v1"}
    assert slow and slow[0][0] == 200
    # Once it is answered, A takes m2's requests again (least outstanding, ties rotate).
    again = {answer(*call(gateway, f"/api/predict/{m2}", headers={"Authorization": f"token-of-{m2}"})[::2])[
        "instance"] for _ in range(4)}
    assert again == {"A", "B"}


def test_a_slot_freed_by_one_model_serves_another_models_waiting_request(gateway, routes, mesh):
    backends, pool, m1, _ = mesh
    # m3 is on A only, one request per instance at once, with a deadline far beyond the slow request's end: its
    # request waits for A's slot held by m1, and is served when m1's request frees it (not at its deadline).
    m3 = routes.unique("m")
    routes.publish(model_entry(routes, m3, pool, [(1, 100, [backends.instance("A")])], instance_concurrency=1,
                               timeout_ms=60_000))
    before = backends.counts()["A"]
    answers = {}
    slow = threading.Thread(target=lambda: answers.update(m1=call(
        gateway, f"/api/predict/{m1}?sleep=3", headers={"Authorization": f"token-of-{m1}"})))
    slow.start()
    wait_for(lambda: backends.counts()["A"] > before, what="m1's slow request to reach instance A")
    waiting = threading.Thread(target=lambda: answers.update(m3=call(
        gateway, f"/api/predict/{m3}", headers={"Authorization": f"token-of-{m3}"}, timeout=30)))
    waiting.start()
    wait_for(lambda: queue_length(gateway, m3) == 1, what="m3's request to wait for A's slot")
    assert "m1" not in answers, "m1's request still holds A's slot"
    slow.join(10)
    waiting.join(30)
    assert answers["m1"][0] == 200
    got = answer(answers["m3"][0], answers["m3"][2])
    assert (got["instance"], got["path"]) == ("A", f"/api/predict/{m3}-v1")


def test_a_copy_mirrored_to_a_pool_model_names_its_key(gateway, routes, mesh, echo):
    backends, pool, _, m2 = mesh
    source = routes.unique()
    routes.put(source, [(1, 100, [echo("S").instance("S")])], mirror={"targets": [m2], "ratio": 100})
    answer(*call(gateway, f"/api/predict/{source}/mirrored", headers={"Authorization": f"token-of-{source}"})[::2])
    copied = f"/api/predict/{m2}-v1/mirrored"
    wait_for(lambda: backends.paths("A")[copied] + backends.paths("B")[copied] == 1, what="the copy to reach m2")


def test_a_version_not_loaded_is_held_until_the_route_lists_an_instance(gateway, routes, mesh):
    backends, pool, _, _ = mesh
    cold = routes.unique("m")
    routes.publish(model_entry(routes, cold, pool, [(1, 100, [])], scale_to_zero=True, activation_timeout_ms=20_000))
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    answers = []
    thread = threading.Thread(target=lambda: answers.append(call(
        gateway, f"/api/predict/{cold}", headers={"Authorization": f"token-of-{cold}"}, timeout=30)))
    thread.start()
    try:
        messages = wait_for(lambda: activation_messages(client, cold), what="the activation to be asked for")
        assert messages[0][1]["args"] == [cold, "local"]  # the control plane loads the model's version
        assert not answers, "held while the version is not loaded"
        routes.publish(model_entry(routes, cold, pool, [(1, 100, [backends.instance("B")])], scale_to_zero=True,
                                   activation_timeout_ms=20_000))
        thread.join(10)
    finally:
        for raw, _ in activation_messages(client, cold):
            client.lrem("celery", 0, raw)
    got = answer(answers[0][0], answers[0][2])
    assert (got["instance"], got["path"], got["authorization"]) == ("B", f"/api/predict/{cold}-v1", f"token-of-{pool}")


# -- the table's rule (gateway/table.py), in process --------------------------------------------------------

def entry(name: str, addresses, pool: str = "", key: bytes = bytes(32)) -> str:
    fields = sealing.token_fields(key, f"token-of-{name}", "local", name)
    if pool:
        fields |= sealing.upstream_token_fields(key, f"token-of-{pool}", "local", name)
    return json.dumps({"service": name, "cluster": "local", "pool": pool, **fields, "versions": [
        {"number": 1, "weight": 100, "instances": [{"address": a} for a in addresses],
         "model": f"{name}-v1" if pool else ""}]})


def test_the_pool_and_its_models_share_instances_which_close_only_when_no_route_lists_them():
    async def run():
        table = RouteTable(key=bytes(32))
        table.apply("m1", entry("m1", ["h:1"], pool="p"))  # before the pool's entry
        table.apply("p", entry("p", ["h:1", "h:2"]))
        table.apply("m2", entry("m2", ["h:1", "h:2"], pool="p"))
        first, second = table.get("p").versions[0].instances
        assert table.get("m1").versions[0].instances == [first]
        assert table.get("m2").versions[0].instances == [first, second]
        assert table.get("m1").upstream_token == b"token-of-p" and table.get("m1").token_bytes == b"token-of-m1"
        assert table.get("p").upstream_token == b"token-of-p"
        assert first.shared is table.state("p") and table.state("m1").instances is table.state("p").instances

        table.apply("p", entry("p", ["h:2"]))  # the pool no longer lists h:1; the models still do
        assert first.pool.open and table.get("m1").versions[0].instances == [first]
        table.apply("m1", entry("m1", [], pool="p"))  # unloaded from m1; m2 still lists it
        assert first.pool.open
        table.apply("m2", None)  # m2 removed: nothing lists h:1 any more
        assert not first.pool.open and "h:1" not in table.state("p").instances
        assert second.pool.open and table.get("p").versions[0].instances == [second]

        table.apply("m1", entry("m1", ["h:3"]))  # m1 leaves the pool: instances of its own again
        assert table.state("m1").instances is not table.state("p").instances
        assert table.get("m1").upstream_token == b"token-of-m1" and second.shared is None

        before = table.get("m1")
        table.apply("m1", entry("m1", ["h:2"], pool="m1"))  # refused, naming why; the last good route stays
        table.apply("q", entry("q", ["h:2"], pool="m3"))
        table.apply("m3", entry("m3", ["h:2"], pool="p"))  # q's pool is a pool itself now: refused
        assert table.get("m1") is before and table.get("m3") is None
        for state in table.services.values():
            for instance in state.instances.values():
                instance.pool.close()

    run_coroutine(run())


def test_a_pool_model_of_a_pool_model_is_refused():
    async def run():
        table = RouteTable(key=bytes(32))
        table.apply("m1", entry("m1", ["h:1"], pool="p"))
        table.apply("m2", entry("m2", ["h:1"], pool="m1"))
        assert table.get("m2") is None and table.get("m1") is not None

    run_coroutine(run())



def test_an_adapter_pools_model_keeps_its_path_and_names_its_key_in_the_openai_body(gateway, routes, echo):
    """An adapter pool's engine (vLLM) serves the OpenAI API at its own paths and takes the adapter in `model`:
    the path is the one an LLM service gets, the body names the key (docs/mesh.md, LoRA adapters)."""
    backends = echo("E")
    pool, adapter = routes.unique("pool"), routes.unique("lora")
    routes.publish(model_entry(routes, adapter, pool, [(1, 100, [backends.instance("E")])], llm=True))
    routes.put(pool, [(1, 100, [backends.instance("E")])])
    own = {"Authorization": f"token-of-{adapter}", "Content-Type": "application/json"}
    body = {"model": adapter, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    sent = json.dumps({**body, "model": f"{adapter}-v1"}, separators=(",", ":")).encode()
    for path, upstream in {"/v1/chat/completions": "/v1/chat/completions",
                           f"/api/predict/{adapter}/v1/chat/completions": "/v1/chat/completions"}.items():
        got = answer(*call(gateway, path, headers=own, body=json.dumps(body).encode())[::2])
        assert (got["path"], got["body_length"]) == (upstream, len(sent)), path
        assert got["authorization"] == f"token-of-{pool}"
