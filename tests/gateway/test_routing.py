"""Routing through a running gateway to fast echo instances: weights, mirror, changes under load, limits,
retries, timeouts, per-version endpoints and paths of each protocol."""

import threading
import time

from tests.agent.kit import wait_for

from .conftest import by_instance, call, load, statuses

IRIS = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


def auth(name: str) -> dict:
    return {"Authorization": f"token-of-{name}", "Content-Type": "application/json"}


def test_it_splits_traffic_80_20_within_two_points_over_5000_requests(gateway, routes, echo):
    backends = echo("a1", "a2", "b1")
    name = routes.unique()
    routes.put(name, [(1, 80, [backends.instance("a1"), backends.instance("a2")]), (2, 20, [backends.instance("b1")])])

    results = load(gateway.port, f"/api/predict/{name}", requests=5000, threads=4, headers=auth(name), body=IRIS)

    assert statuses(results) == {200: 5000}
    served = by_instance(results)
    share_v2 = served["b1"] / 5000 * 100
    assert 18 <= share_v2 <= 22, f"version 2 took {share_v2:.1f} % (wanted 20 ± 2): {served}"
    # Least outstanding requests spreads version 1 over both of its instances.
    assert min(served["a1"], served["a2"]) > 0.3 * (served["a1"] + served["a2"]), served


def test_it_mirrors_30_percent_within_two_points_and_never_answers_with_the_copy(gateway, routes, echo):
    backends = echo("primary", "shadow")
    name, target = routes.unique(), routes.unique("shadow")
    routes.put(target, [(1, 100, [backends.instance("shadow")])])
    routes.put(name, [(1, 100, [backends.instance("primary")])], mirror={"targets": [target], "ratio": 30})

    results = load(gateway.port, f"/api/predict/{name}", requests=5000, threads=4, headers=auth(name), body=IRIS)

    assert statuses(results) == {200: 5000} and by_instance(results) == {"primary": 5000}
    deadline = time.monotonic() + 10
    while (copies := backends.counts()["shadow"]) < 1300 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # copies still in flight land now
    copies = backends.counts()["shadow"]
    assert 28 <= copies / 5000 * 100 <= 32, f"{copies} copies of 5000 requests (wanted 30 % ± 2)"
    # The copies reach the target as a call of its own would: /api/predict/<target> as `/`.
    assert backends.paths("shadow") == {"/": copies}


def test_it_keeps_every_request_2xx_while_weights_and_instances_change_under_load(gateway, routes, echo):
    backends = echo("v1a", "v1b", "v2a")
    leaving = echo("gone")  # an instance that leaves the table, then its process stops
    name = routes.unique()
    v1 = [backends.instance("v1a"), leaving.instance("gone")]
    routes.put(name, [(1, 100, v1), (2, 0, [backends.instance("v2a")])])
    stop = threading.Event()
    results = {}
    loader = threading.Thread(target=lambda: results.update(
        load(gateway.port, f"/api/predict/{name}", seconds=20, threads=4, headers=auth(name), stop_event=stop)))
    loader.start()
    try:
        time.sleep(0.3)
        for weight in (90, 70, 50, 30, 10, 0):
            routes.put(name, [(1, weight, v1), (2, 100 - weight, [backends.instance("v2a")])])
            time.sleep(0.15)
        # Version 1 loses an instance (removed from the table first, as the control plane does), gains another.
        v1 = [backends.instance("v1a"), backends.instance("v1b")]
        routes.put(name, [(1, 50, v1), (2, 50, [backends.instance("v2a")])])
        leaving.stop()
        time.sleep(0.3)
        routes.put(name, [(1, 0, v1), (2, 100, [backends.instance("v2a")])])
        time.sleep(0.3)
    finally:
        stop.set()
        loader.join()
    assert sum(results.values()) > 500, results
    assert set(statuses(results)) == {200}, f"non-2xx answers while routes changed: {statuses(results)}"


def test_it_answers_503_with_retry_after_when_the_queue_is_full_instead_of_hanging(gateway, routes, echo):
    backends = echo("slow")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("slow")])], instance_concurrency=1, max_queue_size=2)
    answers = []

    def one():
        began = time.monotonic()
        status, headers, _ = call(gateway, f"/api/predict/{name}?sleep=0.8", headers=auth(name))
        answers.append((status, headers.get("retry-after"), time.monotonic() - began))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    served = [a for a in answers if a[0] == 200]
    refused = [a for a in answers if a[0] == 503]
    assert len(served) == 3 and len(refused) == 3, answers  # 1 in flight + 2 queued; the rest refused
    assert all(retry == "1" and took < 0.5 for _, retry, took in refused), refused
    assert max(took for *_, took in served) > 2.0  # the queued ones waited their turn on the one slot


def test_it_answers_503_when_a_queued_request_waits_past_the_timeout(gateway, routes, echo):
    """Waiting for a slot is bounded by the service's timeout too (metadata.rpc.keepalive)."""
    backends = echo("busy")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("busy")])], instance_concurrency=1, timeout_ms=400)
    ahead = [threading.Thread(target=call, args=(gateway, f"/api/predict/{name}?sleep=0.35"),
                              kwargs={"headers": auth(name)}) for _ in range(2)]
    for thread in ahead:  # the first holds the slot until 0.35 s, the second then until 0.7 s
        thread.start()
        time.sleep(0.05)
    began = time.monotonic()
    status, headers, body = call(gateway, f"/api/predict/{name}", headers=auth(name))
    took = time.monotonic() - began
    assert status == 503 and headers["retry-after"] == "1" and b"busy" in body, (status, body)
    assert 0.35 < took < 1.0, took
    for thread in ahead:
        thread.join()


def test_it_answers_504_when_the_instance_is_slower_than_the_service_timeout(gateway, routes, echo):
    backends = echo("sleepy")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("sleepy")])], timeout_ms=200)
    began = time.monotonic()
    status, _, body = call(gateway, f"/api/predict/{name}?sleep=2", headers=auth(name))
    assert status == 504 and b"200 ms" in body and time.monotonic() - began < 1.5
    assert call(gateway, f"/api/predict/{name}", headers=auth(name))[0] == 200  # the next one is fine


def test_it_retries_on_another_instance_only_when_the_connection_failed(gateway, routes, echo):
    backends = echo("alive")
    dead = echo("dead")
    dead.stop()  # still listed: the table lags behind a crash
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("alive"), dead.instance("dead")])])
    results = load(gateway.port, f"/api/predict/{name}", requests=200, threads=2, headers=auth(name))
    assert statuses(results) == {200: 200} and by_instance(results) == {"alive": 200}
    assert f'ferry_gateway_upstream_retries_total{{service="{name}"}}' in gateway.metrics()


def test_it_finishes_a_request_in_flight_when_its_instance_leaves_the_table(gateway, routes, echo):
    backends = echo("old", "new")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("old")])])
    answer = {}
    slow = threading.Thread(target=lambda: answer.update(
        zip(("status", "headers", "body"), call(gateway, f"/api/predict/{name}?sleep=1", headers=auth(name)))))
    slow.start()
    # The echo counts a request when it arrives, before it answers.
    wait_for(lambda: backends.counts()["old"] >= 1, what="the slow request to reach its instance")
    routes.put(name, [(2, 100, [backends.instance("new")])])
    assert b'"instance": "new"' in call(gateway, f"/api/predict/{name}", headers=auth(name))[2]
    slow.join()
    assert answer["status"] == 200 and b'"instance": "old"' in answer["body"]


def test_it_routes_eas_v1_and_v2_paths_and_pins_versions(gateway, routes, echo):
    backends = echo("live", "canary")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("live")]), (2, 0, [backends.instance("canary")])])

    def instance_and_path(path, method="POST", headers=None):
        status, answer_headers, body = call(gateway, path, method=method, headers={**auth(name), **(headers or {})})
        assert status == 200, (path, status, body)
        import json

        answer = json.loads(body)
        return answer["instance"], answer["path"] + (f"?{answer['query']}" if answer["query"] else "")

    # EAS paths lose /api/predict/<svc>, as EAS strips it; the query stays.
    assert instance_and_path(f"/api/predict/{name}") == ("live", "/")
    assert instance_and_path(f"/api/predict/{name}/") == ("live", "/")
    assert instance_and_path(f"/api/predict/{name}?x=1") == ("live", "/?x=1")
    assert instance_and_path(f"/api/predict/{name}/sub/path?x=1") == ("live", "/sub/path?x=1")
    assert instance_and_path(f"/api/predict/{name}/v1/chat/completions") == ("live", "/v1/chat/completions")
    assert instance_and_path(f"/api/predict/{name}/v2/models/m/infer") == ("live", "/v2/models/m/infer")
    assert instance_and_path(f"/v1/models/{name}:predict") == ("live", f"/v1/models/{name}:predict")
    assert instance_and_path(f"/v2/models/{name}/infer") == ("live", f"/v2/models/{name}/infer")
    assert instance_and_path(f"/v2/models/{name}", method="GET") == ("live", f"/v2/models/{name}")
    assert instance_and_path(f"/v2/models/{name}/ready", method="GET") == ("live", f"/v2/models/{name}/ready")
    assert instance_and_path("/v2/health/ready", method="GET", headers={"model": name}) == ("live", "/v2/health/ready")
    # Per-version endpoints reach a version that has no traffic.
    assert instance_and_path(f"/v2/models/{name}/versions/2/infer") == ("canary", f"/v2/models/{name}/infer")
    pinned = instance_and_path(f"/api/predict/{name}", headers={"Ferry-Version": "2"})
    assert pinned == ("canary", "/")
    status, headers, _ = call(gateway, f"/api/predict/{name}", headers=auth(name))
    assert headers["ferry-version"] == "1"
    assert call(gateway, f"/v2/models/{name}/versions/7/infer", headers=auth(name))[0] == 404
    assert call(gateway, "/api/predict/no_such_service", headers=auth(name))[0] == 404
    # The gateway's own health and server metadata, without a model header.
    assert call(gateway, "/v2/health/live", method="GET")[0] == 200
    assert call(gateway, "/v2/health/ready", method="GET")[0] == 200


def test_it_answers_direct_connection_discovery_with_instances_and_weights(gateway, routes, echo):
    backends = echo("d1", "d2", "d3")
    name = routes.unique()
    routes.put(name, [(1, 80, [backends.instance("d1"), backends.instance("d2")]), (2, 20, [backends.instance("d3")]),
                      (3, 0, [])])
    status, _, body = call(gateway, f"/api/v1/servicediscovery/upstreams/{name}", method="GET")
    import json

    items = json.loads(body)["endpoints"]["items"]
    weights = {f"{i['ip']}:{i['port']}": i["weight"] for i in items}
    assert status == 200 and weights == {backends.addresses["d1"]: 4000, backends.addresses["d2"]: 4000,
                                         backends.addresses["d3"]: 2000}


def test_it_routes_a_service_group_by_group_weight(gateway, routes, echo):
    backends = echo("g1", "g2")
    group = routes.unique("group")
    first, second = routes.unique(), routes.unique()
    routes.put(first, [(1, 100, [backends.instance("g1")])], group=group, group_weight=75, traffic_state="grouping")
    routes.put(second, [(1, 100, [backends.instance("g2")])], group=group, group_weight=25, traffic_state="grouping")
    results = load(gateway.port, f"/api/predict/{group}", requests=1000, threads=2, headers=auth(second))
    served = by_instance(results)
    assert statuses(results) == {200: 1000} and served == {"g1": 750, "g2": 250}, served  # smooth round robin
    # Standalone members leave the group's traffic.
    routes.put(second, [(1, 100, [backends.instance("g2")])], group=group, group_weight=25, traffic_state="standalone")
    assert by_instance(load(gateway.port, f"/api/predict/{group}", requests=100, threads=1,
                            headers=auth(first))) == {"g1": 100}


def test_it_serves_queued_requests_in_arrival_order(gateway, routes, echo):
    backends = echo("one")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("one")])], instance_concurrency=1, max_queue_size=10)
    finished = []

    def one(label: str, sleep: float):
        call(gateway, f"/api/predict/{name}?sleep={sleep}", headers=auth(name))
        finished.append(label)

    threads = [threading.Thread(target=one, args=("first", 0.3))]
    threads += [threading.Thread(target=one, args=(label, 0.05)) for label in "abcde"]
    for thread in threads:
        thread.start()
        time.sleep(0.03)
    for thread in threads:
        thread.join()
    assert finished == ["first", "a", "b", "c", "d", "e"]
