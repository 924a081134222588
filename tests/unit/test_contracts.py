"""The contracts between processes (contracts/): a route entry written by the control plane reads back the same
in the gateway, the JSON keeps the fields and order it always had, a bad entry is refused naming the field, the
Redis names are the ones both sides used, and the smooth weighted round robin spreads as nginx's does."""

import json
from collections import Counter

import pytest

from contracts import keys, sealing
from contracts.routes import RouteEntry, RouteEntryError, RouteInstance, RouteMirror, RouteVersion
from contracts.weighted_round_robin import next_choice

ENTRY = RouteEntry(
    service="iris", cluster="local", project=3, token_digest="ab" * 32, token_sealed="v1:sealed",
    running=True, timeout_ms=2500, max_queue_size=64, instance_concurrency=2, scale_to_zero=True,
    versions=(RouteVersion(1, 80, (RouteInstance("iris-1-a", "127.0.0.1:9001"),)),
              RouteVersion(2, 20, (RouteInstance("iris-2-a", "[::1]:9002"), RouteInstance("iris-2-b", "h:9003")))),
    mirror=RouteMirror(targets=("shadow",), ratio=50), group="shop", group_weight=0, traffic_state="grouping",
    generation=7, failed="", llm=True, activation_timeout_ms=900_000,
)


def test_an_entry_reads_back_as_it_was_written():
    assert RouteEntry.from_json(ENTRY.to_json()) == ENTRY
    assert RouteEntry.from_json(ENTRY.to_json().encode()) == ENTRY  # Redis answers bytes


def test_the_json_has_the_fields_and_order_the_control_plane_always_wrote():
    written = json.loads(ENTRY.to_json())
    assert list(written) == [
        "service", "cluster", "project", "token_digest", "token_sealed", "running", "timeout_ms", "max_queue_size",
        "instance_concurrency", "scale_to_zero", "versions", "mirror", "group", "group_weight", "traffic_state",
        "generation", "failed", "llm", "activation_timeout_ms", "pool", "upstream_token_sealed"]
    assert written["versions"][1] == {"number": 2, "weight": 20, "instances": [
        {"name": "iris-2-a", "address": "[::1]:9002"}, {"name": "iris-2-b", "address": "h:9003"}]}  # no model: none
    assert written["mirror"] == {"targets": ["shadow"], "ratio": 50}
    assert json.loads(RouteEntry("a", "local", "00", "v1:x").to_json())["mirror"] is None


def test_absent_fields_read_as_the_gateway_always_read_them():
    entry = RouteEntry.from_json(json.dumps({"service": "a", "cluster": "local", "token_digest": "00",
                                             "token_sealed": "v1:x", "versions": [
                                                 {"number": 1, "instances": [{"address": "h:1"}]}]}))
    assert (entry.running, entry.timeout_ms, entry.max_queue_size, entry.instance_concurrency) == (True, 5000, 0, 0)
    assert (entry.scale_to_zero, entry.mirror, entry.group, entry.group_weight) == (False, None, "", 100)
    assert (entry.traffic_state, entry.generation, entry.failed, entry.project) == ("standalone", None, "", None)
    assert (entry.llm, entry.activation_timeout_ms) == (False, 0)  # an older entry: not an LLM, the gateway's deadline
    assert entry.versions == (RouteVersion(1, 0, (RouteInstance("h:1", "h:1"),)),)  # unnamed: named by address
    assert entry.versions[0].model == ""  # served under the service's own name
    assert (entry.pool, entry.upstream_token_sealed) == ("", "")  # an ordinary service, sent its own token
    assert entry.instance_names() == {"h:1": "h:1"}


def test_a_group_weight_of_zero_stays_zero_and_null_reads_as_100():
    base = {"service": "a", "cluster": "local", "token_digest": "00", "token_sealed": "v1:x"}
    assert RouteEntry.from_dict({**base, "group_weight": 0}).group_weight == 0
    assert RouteEntry.from_dict({**base, "group_weight": None}).group_weight == 100


@pytest.mark.parametrize(("raw", "named"), [
    ("not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"cluster": "local", "token_digest": "00", "token_sealed": "v1:x"}), "service"),
    (json.dumps({"service": "a", "cluster": "local", "token_sealed": "v1:x"}), "token_digest"),
    (json.dumps({"service": "a", "cluster": "local", "token_digest": "00", "token_sealed": "v1:x",
                 "timeout_ms": "soon"}), "timeout_ms"),
    (json.dumps({"service": "a", "cluster": "local", "token_digest": "00", "token_sealed": "v1:x",
                 "versions": [{"weight": 1}]}), "versions[0]"),
    (json.dumps({"service": "a", "cluster": "local", "token_digest": "00", "token_sealed": "v1:x",
                 "versions": [{"number": 1, "instances": [{"name": "x"}]}]}), "versions[0].instances[0].address"),
    (json.dumps({"service": "a", "cluster": "local", "token_digest": "00", "token_sealed": "v1:x",
                 "mirror": {"targets": [], "ratio": "half"}}), "mirror.ratio"),
    (json.dumps({"service": "a", "cluster": "local", "token_digest": "00", "token_sealed": "v1:x",
                 "llm": "yes"}), "llm"),
    (json.dumps({"service": "a", "cluster": "local", "token_digest": "00", "token_sealed": "v1:x",
                 "activation_timeout_ms": "long"}), "activation_timeout_ms"),
    (json.dumps({"service": "a", "cluster": "local", "token_digest": "00", "token_sealed": "v1:x",
                 "pool": 3}), "pool"),
    (json.dumps({"service": "a", "cluster": "local", "token_digest": "00", "token_sealed": "v1:x",
                 "upstream_token_sealed": {"v1": "x"}}), "upstream_token_sealed"),
    (json.dumps({"service": "a", "cluster": "local", "token_digest": "00", "token_sealed": "v1:x",
                 "versions": [{"number": 1}, {"number": 2, "model": ["m-v2"]}]}), "versions[1].model"),
])
def test_an_unreadable_entry_is_refused_naming_the_field(raw, named):
    with pytest.raises(RouteEntryError, match=named.replace("[", r"\[").replace("]", r"\]")):
        RouteEntry.from_json(raw)


POOL_MODEL = RouteEntry(
    service="m1", cluster="local", token_digest="cd" * 32, token_sealed="v1:own", scale_to_zero=True,
    versions=(RouteVersion(1, 0, (RouteInstance("pool1-a", "127.0.0.1:9001"),), model="m1-v1"),
              RouteVersion(2, 100, (), model="m1-v2")),
    activation_timeout_ms=30_000, pool="pool1", upstream_token_sealed="v1:pools",
)


def test_a_pool_model_entry_reads_back_with_its_pool_upstream_token_and_served_names():
    assert RouteEntry.from_json(POOL_MODEL.to_json()) == POOL_MODEL
    written = json.loads(POOL_MODEL.to_json())
    assert (written["pool"], written["upstream_token_sealed"]) == ("pool1", "v1:pools")
    assert [v["model"] for v in written["versions"]] == ["m1-v1", "m1-v2"]
    base = {"service": "a", "cluster": "local", "token_digest": "00", "token_sealed": "v1:x"}
    nulls = RouteEntry.from_dict({**base, "pool": None, "upstream_token_sealed": None,
                                  "versions": [{"number": 1, "model": None}]})
    assert (nulls.pool, nulls.upstream_token_sealed, nulls.versions[0].model) == ("", "", "")


def test_the_upstream_token_is_sealed_to_its_entry_and_has_no_digest():
    key = bytes(range(32))
    fields = sealing.upstream_token_fields(key, "pool-token", "local", "m1")
    assert list(fields) == ["upstream_token_sealed"]
    assert sealing.unseal(key, fields["upstream_token_sealed"], "local", "m1") == b"pool-token"
    with pytest.raises(sealing.SealError):  # moved into another model's entry, it does not open
        sealing.unseal(key, fields["upstream_token_sealed"], "local", "m2")


def test_an_entry_is_immutable():
    with pytest.raises(AttributeError):
        ENTRY.group = "other"  # type: ignore[misc]


def test_the_redis_names_are_the_ones_both_sides_have_used():
    assert keys.routes_key("edge") == "ferry:routes:edge"
    assert keys.changed_channel("edge") == "ferry:routes:edge:changed"
    assert keys.complete_key("edge") == "ferry:routes:edge:complete"
    assert keys.LEGACY_ROUTE_KEYS == ("ferry:routes", "ferry:routes:complete")
    assert keys.AGENT_WAKE_CHANNEL == "ferry:agent:wake"
    assert keys.metrics_second_key("local", "iris", 2, 1_700_000_059) == "ferry:metrics:s:local:iris:2:1700000059"
    # The minute a second adds up into: the gateway writes it, the console reads it with the same division.
    assert keys.metrics_minute_key("local", "iris", 2, 1_700_000_059) == "ferry:metrics:m:local:iris:2:28333334"
    assert keys.metrics_minute_key("local", "iris", 2, 1_700_000_040) == keys.metrics_key("m", "local", "iris", 2, 28333334)
    assert keys.metrics_minute_key("local", "iris", 2, 1_700_000_039) == "ferry:metrics:m:local:iris:2:28333333"


def test_the_smooth_weighted_round_robin_spreads_80_20_evenly():
    credits = [0, 0]
    chosen = [next_choice(credits, (80, 20), 100) for _ in range(10)]
    assert chosen == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]
    assert Counter(next_choice(credits, (80, 20), 100) for _ in range(100)) == {0: 80, 1: 20}


def test_the_smooth_weighted_round_robin_gives_ties_to_the_first_and_keeps_credits_balanced():
    credits = [0, 0, 0]
    assert [next_choice(credits, (1, 1, 1), 3) for _ in range(6)] == [0, 1, 2, 0, 1, 2]
    assert credits == [0, 0, 0]  # after a whole cycle every credit is back where it began
    credits = [0, 0]
    assert [next_choice(credits, (0, 5), 5) for _ in range(3)] == [1, 1, 1]  # a zero weight is never chosen
