from datetime import UTC, datetime, timedelta

from deployer.rollout import RollingLimits, rollout_plan, steady_plan
from services.rollouts import Rollout

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE = timedelta(seconds=600)


def rollout(strategy: str, **changes) -> Rollout:
    return Rollout.from_json({"strategy": strategy, "from_version": 1, "to_version": 2, "state": "Progressing",
                              "canary_weight": 20, "started_at": T0.isoformat(), "retain_until": None,
                              "message": ""} | changes)


def plan(record, *, ready, weights=None, total=2, now=T0 + timedelta(seconds=5), rolling=RollingLimits()):
    return rollout_plan(record, total=total, ready=ready, weights=weights or {1: 100, 2: 0}, now=now,
                        deadline=DEADLINE, service="demo", rolling=rolling)


def test_a_steady_service_splits_instances_by_weight():
    assert steady_plan(weights={1: 80, 2: 20}, total=4).replicas == {1: 4, 2: 1}
    assert steady_plan(weights={1: 100, 2: 0}, total=0).replicas == {}


def test_rolling_shifts_traffic_as_new_instances_become_ready():
    none_ready = plan(rollout("rolling"), ready={1: 2})  # max_surge 1, max_unavailable 0 by default
    assert none_ready.weights == {1: 100, 2: 0} and none_ready.replicas == {2: 1, 1: 2}
    half = plan(rollout("rolling"), ready={1: 2, 2: 1})
    assert half.weights == {1: 50, 2: 50} and half.replicas == {2: 2, 1: 1}
    assert half.events[0][0] == "ShiftedTraffic"
    done = plan(rollout("rolling"), ready={1: 1, 2: 2}, weights={1: 50, 2: 50})
    assert (done.weights, done.replicas, done.rollout, done.rolled_out) == ({2: 100}, {2: 2}, None, 2)


def steps(total, rolling, ready_new_counts):
    """(new, old) instances at each step of a rolling update, by how many new ones are ready."""
    out = []
    for ready_new in ready_new_counts:
        replicas = plan(rollout("rolling"), ready={1: total, 2: ready_new}, total=total, rolling=rolling).replicas
        out.append((replicas[2], replicas.get(1, 0)))
    return out


def test_rolling_honours_max_surge_and_max_unavailable():
    # One extra at a time, none missing: never more than 5 instances, never fewer than 4 ready.
    assert steps(4, RollingLimits.of({"max_surge": 1, "max_unavailable": 0}, 4), [0, 1, 2, 3]) == \
        [(1, 4), (2, 3), (3, 2), (4, 1)]
    # No extra, one missing: an old one stops first, a new one takes its place.
    assert steps(4, RollingLimits.of({"max_surge": 0, "max_unavailable": 1}, 4), [0, 1, 2, 3]) == \
        [(1, 3), (2, 2), (3, 1), (4, 0)]
    # Everything at once: the old ones stay until the new ones are ready.
    assert steps(4, RollingLimits.of({"max_surge": "100%"}, 4), [0, 2]) == [(4, 4), (4, 2)]


def test_rolling_limits_resolve_percentages_as_kubernetes_does():
    assert RollingLimits.of({"max_surge": "25%", "max_unavailable": "25%"}, 10) == RollingLimits(3, 2)
    assert RollingLimits.of(None, 10) == RollingLimits(1, 0)
    assert RollingLimits.of({"max_surge": 0, "max_unavailable": "10%"}, 5) == RollingLimits(1, 0)  # both 0: one up


def test_a_paused_rolling_update_holds_its_weights():
    paused = plan(rollout("rolling", state="Paused"), ready={1: 2, 2: 2 - 1}, weights={1: 70, 2: 30})
    assert paused.weights == {1: 70, 2: 30}


def test_a_canary_takes_its_share_only_once_ready():
    waiting = plan(rollout("canary", canary_weight=30), ready={1: 2})
    assert waiting.weights == {1: 100, 2: 0} and waiting.replicas == {2: 1, 1: 2}
    serving = plan(rollout("canary", canary_weight=30), ready={1: 2, 2: 1})
    assert serving.weights == {1: 70, 2: 30} and serving.rollout.state == "Progressing"


def test_blue_green_waits_at_zero_then_switches_and_retains_blue():
    green_up = plan(rollout("blue-green"), ready={1: 2, 2: 2})
    assert green_up.weights == {1: 100, 2: 0} and green_up.rollout.state == "AwaitingSwitch"
    assert green_up.events[0][0] == "GreenReady"
    switched = rollout("blue-green", state="Switched", retain_until=(T0 + timedelta(minutes=10)).isoformat())
    warm = plan(switched, ready={1: 2, 2: 2})
    assert warm.weights == {2: 100, 1: 0} and warm.replicas == {2: 2, 1: 2}
    retired = plan(switched, ready={1: 2, 2: 2}, now=T0 + timedelta(minutes=11))
    assert retired.rollout is None and retired.replicas == {2: 2} and retired.rolled_out == 2


def test_a_rollout_past_its_deadline_fails_and_leaves_traffic_where_it_was():
    # One new instance was ready from the start and none since: no progress for 601 s (deployer/progress.py).
    stuck = rollout("rolling", ready_seen=1)
    late = plan(stuck, ready={1: 2, 2: 1}, weights={1: 50, 2: 50}, now=T0 + timedelta(seconds=601))
    assert late.weights == {1: 100, 2: 0} and late.replicas == {1: 2}
    assert late.rollout.state == "Failed" and late.events[0][0] == "RolloutFailed"
    assert plan(late.rollout, ready={1: 2}).weights == {1: 100, 2: 0}  # stays failed


def test_a_green_that_awaits_its_switch_does_not_time_out():
    waiting = rollout("blue-green", state="AwaitingSwitch")
    assert plan(waiting, ready={1: 2, 2: 2}, now=T0 + timedelta(hours=3)).rollout.state == "AwaitingSwitch"
