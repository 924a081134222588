from datetime import datetime, timedelta, timezone

from deployer.conditions import condition_set

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_it_adds_a_condition_with_its_transition_time():
    conditions = condition_set([], type="Ready", status=False, reason="WaitingForCluster", message="m",
                               generation=3, now=T0)
    assert conditions == [{"type": "Ready", "status": "False", "reason": "WaitingForCluster", "message": "m",
                           "last_transition_time": T0.isoformat(), "observed_generation": 3}]


def test_it_moves_the_transition_time_only_when_the_status_changes():
    first = condition_set([], type="Ready", status=False, reason="A", message="", generation=1, now=T0)
    same = condition_set(first, type="Ready", status=False, reason="B", message="", generation=2,
                         now=T0 + timedelta(minutes=5))
    assert same[0]["last_transition_time"] == T0.isoformat() and same[0]["reason"] == "B"
    flipped = condition_set(same, type="Ready", status=True, reason="C", message="", generation=2,
                            now=T0 + timedelta(minutes=9))
    assert flipped[0]["last_transition_time"] == (T0 + timedelta(minutes=9)).isoformat()


def test_it_keeps_conditions_in_a_stable_order():
    conditions = condition_set([], type="Degraded", status=False, reason="", message="", generation=1, now=T0)
    conditions = condition_set(conditions, type="Ready", status=True, reason="", message="", generation=1, now=T0)
    conditions = condition_set(conditions, type="Progressing", status=False, reason="", message="", generation=1,
                               now=T0)
    assert [c["type"] for c in conditions] == ["Ready", "Progressing", "Degraded"]
