"""How the metric scaler and the cron floor combine."""

from autoscaler import combine


def test_it_lets_the_metric_scaler_exceed_the_cron_floor():
    desired, reason = combine(metric_desired=8, cron_floor=5, min_scale=1, max_scale=10)
    assert desired == 8
    assert reason == "metric scaler 8 (above the cron floor 5)"


def test_it_raises_a_lower_metric_decision_to_the_cron_floor():
    desired, reason = combine(metric_desired=2, cron_floor=5, min_scale=1, max_scale=10)
    assert desired == 5
    assert reason == "cron floor 5 over metric scaler 2"


def test_it_keeps_min_when_the_cron_floor_is_lower():
    assert combine(metric_desired=0, cron_floor=1, min_scale=2, max_scale=10)[0] == 2


def test_it_lets_a_scheduled_size_above_max_win():
    desired, reason = combine(metric_desired=10, cron_floor=20, min_scale=1, max_scale=10)
    assert desired == 20
    assert "above max 10" in reason


def test_it_caps_the_metric_scaler_at_max_when_the_floor_is_lower():
    assert combine(metric_desired=50, cron_floor=5, min_scale=1, max_scale=10)[0] == 10


def test_it_keeps_a_zero_decision_without_a_floor():
    assert combine(metric_desired=0, cron_floor=None, min_scale=0, max_scale=10)[0] == 0
    assert combine(metric_desired=0, cron_floor=0, min_scale=0, max_scale=10)[0] == 0
    assert combine(metric_desired=0, cron_floor=3, min_scale=0, max_scale=10)[0] == 3


def test_it_uses_min_without_a_metric_decision():
    assert combine(metric_desired=None, cron_floor=None, min_scale=2, max_scale=None) == (
        2, "min 2 (no metric decision)")
    assert combine(metric_desired=None, cron_floor=4, min_scale=2, max_scale=None)[0] == 4


def test_it_reads_max_zero_as_unbounded():
    assert combine(metric_desired=500, cron_floor=None, min_scale=0, max_scale=0)[0] == 500
