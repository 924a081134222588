"""What the scalers report besides a count: the metric values behind a decision (DescribeServiceAutoScaler's
CurrentMetrics), what each cron job last did (DescribeServiceCronScaler), and what the loop does with a
decision it cannot apply."""

from datetime import UTC, datetime

import pytest

from autoscaler import (EasScalerSettings, KpaSettings, cron_job_states, eas_decide, eas_new_state,
                                 eas_observe, kpa_decide, kpa_new_state, kpa_observe)
from services.scale import cron_ceiling, effective_instance_count, scale_write

DAY_AND_NIGHT = {"ScaleJobs": [{"Name": "morning", "Schedule": "0 0 8 * * *", "TargetSize": 10},
                               {"Name": "evening", "Schedule": "0 0 20 * * *", "TargetSize": 2}],
                 "ExcludeDates": []}
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
NIGHT = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)


# --- CurrentMetrics ----------------------------------------------------------------------------------------


def test_an_eas_decision_reports_each_strategy_in_its_thresholds_units():
    settings = EasScalerSettings.from_autoscaler({"min": 1, "max": 10, "scaleStrategies": [
        {"metricName": "qps", "threshold": 10}, {"metricName": "cpu", "threshold": 70}]})
    state = eas_new_state(0)
    for second in range(31):
        state = eas_observe(state, second, {"qps": 60})  # 60 requests a second on 3 instances: 20 each
    _, decision = eas_decide(settings, state, now=30, current_replicas=3, metrics={"cpu": 42.5})
    assert decision.metrics == (("qps", pytest.approx(20)), ("cpu", 42.5))


def test_an_eas_decision_leaves_out_a_metric_not_measured_yet():
    settings = EasScalerSettings.from_autoscaler({"min": 1, "max": 10, "scaleStrategies": [
        {"metricName": "cpu", "threshold": 70}]})
    _, decision = eas_decide(settings, eas_new_state(0), now=2, current_replicas=1)
    assert decision.metrics == ()


def test_a_kpa_decision_reports_its_metrics_stable_average():
    state = kpa_new_state(0)
    for second in range(60):
        state = kpa_observe(state, second, 35.0)
    _, decision = kpa_decide(KpaSettings(metric="rps"), state, now=59, ready_pods=1)
    assert decision.metrics == (("rps", pytest.approx(35.0)),)


# --- Cron job states ---------------------------------------------------------------------------------------


def test_the_job_in_effect_succeeded_and_an_overtaken_one_waits_for_its_next_run():
    states = cron_job_states(DAY_AND_NIGHT, NOON, applied=True, outcome="instances 2 -> 10", previous={})
    morning, evening = states["morning"], states["evening"]
    assert morning["State"] == "Succeed" and morning["RanAt"] == "2026-03-02T08:00:00+00:00"
    assert "instances 2 -> 10" in morning["Message"] and morning["EvaluatedAt"] == NOON.isoformat()
    assert evening["State"] == "Submitted" and 'overtaken by job "morning"' in evening["Message"]


def test_a_runs_outcome_stays_until_the_job_runs_again():
    noon = cron_job_states(DAY_AND_NIGHT, NOON, applied=True, outcome="instances 2 -> 10", previous={})
    later = cron_job_states(DAY_AND_NIGHT, NOON.replace(hour=13), applied=True, outcome="10 instance(s), as decided",
                            previous=noon)
    assert later["morning"]["Message"] == noon["morning"]["Message"]  # how it took effect, not the last tick
    night = cron_job_states(DAY_AND_NIGHT, NIGHT, applied=True, outcome="instances 10 -> 2", previous=later)
    assert night["evening"]["State"] == "Succeed" and "instances 10 -> 2" in night["evening"]["Message"]
    assert night["morning"] == {**noon["morning"], "EvaluatedAt": NIGHT.isoformat()}


def test_a_run_that_could_not_take_effect_failed_and_says_why():
    states = cron_job_states(DAY_AND_NIGHT, NOON, applied=False, outcome="held at zero after a failed wake-up",
                             previous={})
    assert states["morning"]["State"] == "Failed"
    assert "could not set at least 10 instance(s): held at zero" in states["morning"]["Message"]


def test_a_job_whose_every_run_is_excluded_has_not_run():
    every_day_excluded = {**DAY_AND_NIGHT, "ExcludeDates": ["* * * * *"]}
    states = cron_job_states(every_day_excluded, NOON, applied=True, outcome="", previous={})
    assert states["morning"]["State"] == "Submitted" and "excluded date" in states["morning"]["Message"]
    assert states["morning"]["RanAt"] == ""


# --- Applying a decision -----------------------------------------------------------------------------------


def test_a_cron_target_above_max_lifts_the_range_to_it():
    scaler = {"min": 1, "max": 10}
    cron = {"ScaleJobs": [{"Name": "peak", "Schedule": "0 0 8 * * *", "TargetSize": 20}]}
    assert cron_ceiling(cron) == 20 and cron_ceiling(None) == 0
    assert effective_instance_count(instance_count=1, autoscaler=scaler, autoscaled=20, cron_scaler=cron) == 20
    assert effective_instance_count(instance_count=1, autoscaler=scaler, autoscaled=20) == 10
    assert effective_instance_count(instance_count=1, autoscaler=scaler, autoscaled=30, cron_scaler=cron) == 20


def test_a_decision_is_written_once_and_one_that_cannot_apply_is_not_written():
    assert scale_write(current=10, desired=20, effective_if_written=20) == "write"
    assert scale_write(current=20, desired=20, effective_if_written=20) == "none"  # the next tick: nothing
    assert scale_write(current=10, desired=20, effective_if_written=10) == "unapplied"
