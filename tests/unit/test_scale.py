from datetime import UTC, datetime, timedelta

from services.scale import activation_count, effective_instance_count
from services.activations import activation_failed, activation_verdict


def test_it_uses_the_fixed_count_without_an_autoscaler_raised_to_a_cron_floor():
    assert effective_instance_count(instance_count=3, autoscaler=None, autoscaled=None) == 3
    assert effective_instance_count(instance_count=3, autoscaler=None, autoscaled=5) == 5
    assert effective_instance_count(instance_count=3, autoscaler=None, autoscaled=1) == 3


def test_it_starts_an_autoscaled_service_at_its_fixed_count_within_the_range():
    assert effective_instance_count(instance_count=1, autoscaler={"min": 2, "max": 5}, autoscaled=None) == 2
    assert effective_instance_count(instance_count=9, autoscaler={"min": 2, "max": 5}, autoscaled=None) == 5


def test_it_follows_the_autoscalers_decision_within_min_and_max():
    scaler = {"min": 0, "max": 4}
    assert effective_instance_count(instance_count=1, autoscaler=scaler, autoscaled=0) == 0
    assert effective_instance_count(instance_count=1, autoscaler=scaler, autoscaled=3) == 3
    assert effective_instance_count(instance_count=1, autoscaler=scaler, autoscaled=10) == 4


def test_it_wakes_with_the_activation_replicas_or_one():
    assert activation_count({"min": 0, "max": 3}) == 1
    assert activation_count({"behavior": {"onZero": {"scaleUpActivationReplicas": 2}}}) == 2


# --- Wake-ups from zero -------------------------------------------------------------------------------------

WOKEN = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def wake_up(**fields) -> dict:
    return {"since": WOKEN.isoformat(), "generation": 4, "failed": False, "message": "", **fields}


def verdict(activation, *, generation=4, ready=False, after=10.0, deadline=300):
    return activation_verdict(activation, generation=generation, ready=ready, now=WOKEN + timedelta(seconds=after),
                              deadline=timedelta(seconds=deadline))


def test_a_wake_up_waits_for_its_deadline_then_expires():
    assert verdict(None) == "none"
    assert verdict(wake_up(), after=299) == "waiting"
    assert verdict(wake_up(), after=301) == "expired"


def test_a_wake_up_is_forgotten_once_an_instance_serves_or_the_service_changes():
    assert verdict(wake_up(), ready=True, after=301) == "clear"
    assert verdict(wake_up(), generation=5) == "clear"
    assert verdict(wake_up(failed=True), generation=5) == "clear"


def test_a_failed_wake_up_holds_only_for_its_generation():
    assert verdict(wake_up(failed=True), after=10_000) == "failed"
    assert activation_failed(wake_up(failed=True), 4)
    assert not activation_failed(wake_up(failed=True), 5)
    assert not activation_failed(wake_up(), 4)
    assert not activation_failed(None, 4)
