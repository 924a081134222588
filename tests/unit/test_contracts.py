"""The contracts between processes (contracts/): a route entry written by the control plane reads back the same
in the gateway, the JSON keeps the fields and order it always had, a bad entry is refused naming the field, the
Redis names are the ones both sides used, and the smooth weighted round robin spreads as nginx's does."""

import json
from collections import Counter

import pytest

from contracts import keys
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
        "generation", "failed", "llm", "activation_timeout_ms"]
    assert written["versions"][1] == {"number": 2, "weight": 20, "instances": [
        {"name": "iris-2-a", "address": "[::1]:9002"}, {"name": "iris-2-b", "address": "h:9003"}]}
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
])
def test_an_unreadable_entry_is_refused_naming_the_field(raw, named):
    with pytest.raises(RouteEntryError, match=named.replace("[", r"\[").replace("]", r"\]")):
        RouteEntry.from_json(raw)


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
