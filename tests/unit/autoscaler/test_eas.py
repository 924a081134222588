"""The EAS metric scaler: formula, tolerance, stabilization windows, scale to zero, traces."""

import pytest

from autoscaler import EasScalerSettings, eas_activated, eas_decide, eas_new_state, eas_observe
from tests.unit.autoscaler.traces import at, burst, changes, diurnal, drive_eas, noisy, step


def scaler(*strategies, **fields):
    section = {"min": 1, "max": 30, "scaleStrategies": [
        {"metricName": name, "threshold": threshold} for name, threshold in strategies or [("qps", 100)]]}
    section.update(fields)
    return EasScalerSettings.from_autoscaler(section)


def once(settings, current, metrics):
    """One decision on a fresh state with this tick's metrics."""
    return eas_decide(settings, eas_new_state(0), now=0, current_replicas=current, metrics=metrics)[1]


def test_it_reads_the_service_files_autoscaler_section_with_eas_defaults():
    settings = EasScalerSettings.from_autoscaler({
        "min": 0, "max": 8,
        "scaleStrategies": [{"metricName": "qps", "threshold": 50}, {"metricName": "cpu", "threshold": 70}],
        "behavior": {"onZero": {"scaleUpActivationReplicas": 2}},
    })
    assert (settings.min_replicas, settings.max_replicas) == (0, 8)
    assert [(s.metric, s.threshold) for s in settings.strategies] == [("qps", 50), ("cpu", 70)]
    assert (settings.scale_up_window, settings.scale_down_window) == (0, 300)
    assert (settings.zero_grace, settings.activation_replicas) == (300, 2)
    assert settings.metric_window == 30


def test_it_takes_the_stabilization_windows_from_behavior():
    settings = scaler(behavior={"scaleUp": {"stabilizationWindowSeconds": 60},
                                "scaleDown": {"stabilizationWindowSeconds": 30}})
    assert (settings.scale_up_window, settings.scale_down_window) == (60, 30)


def test_it_scales_by_current_times_metric_over_threshold():
    decision = once(scaler(), 4, {"qps": 600})  # 150 per instance against 100
    assert decision.desired == 6
    assert decision.recommendations == (("qps", 6),)
    assert "qps 150.0 per instance is 150 % of threshold 100 on 4 instances: wants 6" in decision.reason


@pytest.mark.parametrize("percent", [90, 95, 105, 110])
def test_it_keeps_the_count_inside_the_10_percent_tolerance(percent):
    settings = scaler(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    decision = once(settings, 10, {"qps": 10 * percent})
    assert decision.desired == 10
    assert "tolerance" in decision.reason


def test_it_changes_the_count_just_outside_the_tolerance():
    settings = scaler(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    assert once(settings, 10, {"qps": 1110}).desired == 12  # 111 %: ceil(11.1)
    assert once(settings, 10, {"qps": 890}).desired == 9  # 89 %: ceil(8.9)


def test_it_uses_cpu_percent_as_is():
    decision = once(scaler(("cpu", 50)), 3, {"cpu": 80})
    assert decision.desired == 5  # ceil(3 × 80 / 50)
    assert "cpu 80.0 % is 160 % of threshold 50 on 3 instances" in decision.reason


def test_it_lets_the_largest_metric_win():
    decision = once(scaler(("qps", 100), ("cpu", 50)), 3, {"qps": 250, "cpu": 100})
    assert dict(decision.recommendations) == {"qps": 3, "cpu": 6}
    assert decision.desired == 6
    assert decision.reason.startswith("cpu")


def test_it_measures_qps_as_the_30_second_average_per_instance():
    settings = scaler()
    state = eas_new_state(0)
    for second in range(60):
        state = eas_observe(state, second, {"qps": 300 if second < 30 else 600})
    _, halfway = eas_decide(settings, state, now=44, current_replicas=3)
    _, full = eas_decide(settings, state, now=59, current_replicas=3)
    assert halfway.desired == 5  # average 450: 150 per instance, ceil(3 × 1.5)
    assert full.desired == 6  # average 600


def test_it_counts_silent_seconds_as_no_requests_but_not_as_idle_cpu():
    state = eas_new_state(0)
    for second in range(0, 30, 2):  # a sample every other second
        state = eas_observe(state, second, {"qps": 400, "cpu": 80})
    _, decision = eas_decide(scaler(("qps", 100), ("cpu", 80)), state, now=29, current_replicas=2)
    # qps averages 200 (100 per instance), cpu stays 80: both at their threshold on 2 instances.
    assert dict(decision.recommendations) == {"qps": 2, "cpu": 2}


def test_it_prefers_the_ticks_given_metrics_over_the_observed_average():
    state = eas_observe(eas_new_state(0), 0, {"qps": 100})
    _, decision = eas_decide(scaler(), state, now=0, current_replicas=1, metrics={"qps": 400})
    assert decision.desired == 4


def test_it_keeps_the_count_without_any_measurement():
    decision = once(scaler(("cpu", 50)), 3, {})
    assert decision.desired == 3
    assert "no metric measured yet" in decision.reason


def test_it_stays_within_min_and_max():
    assert once(scaler(min=2), 2, {"qps": 10}).desired == 2
    assert once(scaler(max=5), 4, {"qps": 4000}).desired == 5


# --- Stabilization windows ---------------------------------------------------------------------------------


def test_it_does_not_scale_down_for_a_dip_shorter_than_the_window():
    ticks, _ = drive_eas(scaler(), burst(400, 200, start=100, length=120), 600, replicas=4)
    assert min(t.desired for t in ticks) == 4
    assert any("scale-down held to 4" in t.decision.reason for t in ticks)


def test_it_scales_down_once_the_300_second_window_has_only_lower_recommendations():
    ticks, _ = drive_eas(scaler(), step(400, 150, at=100), 800, replicas=4)
    first_lower = min(t.time for t in ticks if t.desired < 4)
    # The last recommendation of 4 is made while the 30 s average still reads about 400.
    assert 100 + 300 <= first_lower <= 100 + 300 + 30
    assert ticks[-1].desired == 2


def test_it_scales_up_at_once_by_default():
    ticks, _ = drive_eas(scaler(), step(400, 800, at=100), 200, replicas=4)
    first_higher = min(t.time for t in ticks if t.desired > 4)
    assert first_higher <= 104  # as soon as the average leaves the tolerance band
    assert at(ticks, 130).desired == 8


def test_it_holds_a_scale_up_for_the_scale_up_window():
    settings = scaler(behavior={"scaleUp": {"stabilizationWindowSeconds": 60}})
    spike, _ = drive_eas(settings, burst(400, 1200, start=100, length=20), 400, replicas=4)
    assert max(t.desired for t in spike) == 4
    sustained, _ = drive_eas(settings, step(400, 1200, at=100), 400, replicas=4)
    first_higher = min(t.time for t in sustained if t.desired > 4)
    assert 160 <= first_higher <= 170
    assert any("by the 60 s scale-up window" in t.decision.reason for t in sustained)


# --- Zero --------------------------------------------------------------------------------------------------


def test_it_scales_to_zero_after_the_grace_period_without_requests():
    settings = scaler(min=0, behavior={"onZero": {"scaleDownGracePeriodSeconds": 60}})
    ticks, _ = drive_eas(settings, step(200, 0, at=100), 300, replicas=2)  # last request at second 99
    assert at(ticks, 158).desired == 2
    assert at(ticks, 160).desired == 0
    assert "no requests for 61 s ≥ 60 s: scaling to zero" in at(ticks, 160).decision.reason


def test_it_never_scales_to_zero_with_min_one():
    ticks, _ = drive_eas(scaler(min=1), step(200, 0, at=100), 1000, replicas=2)
    assert min(t.desired for t in ticks) == 1


def test_it_wakes_from_zero_with_the_activation_replicas():
    settings = scaler(min=0, behavior={"onZero": {"scaleUpActivationReplicas": 3}})
    state = eas_new_state(0)
    state, quiet = eas_decide(settings, state, now=0, current_replicas=0)
    assert quiet.desired == 0
    state = eas_observe(state, 1, {"qps": 1})
    _, woken = eas_decide(settings, state, now=2, current_replicas=0)
    assert woken.desired == 3


def test_it_keeps_a_version_the_activator_woke_for_the_grace_period():
    settings = scaler(min=0, behavior={"onZero": {"scaleDownGracePeriodSeconds": 60}})
    state = eas_new_state(0)  # no request ever: idle since 0, so at 500 it is long past the grace period
    state, slept = eas_decide(settings, state, now=500, current_replicas=1)
    assert slept.desired == 0
    woken = eas_activated(state, 600)  # the activator raised it to 1; the held request is not counted yet
    _, kept = eas_decide(settings, woken, now=602, current_replicas=1)
    assert kept.desired == 1, kept.reason
    _, later = eas_decide(settings, woken, now=662, current_replicas=1)
    assert later.desired == 0


def test_it_starts_a_version_at_zero_below_min():
    assert once(scaler(min=2), 0, {}).desired == 2


# --- Traces ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_it_does_not_flap_on_noise_around_the_threshold(seed):
    # 500 requests per second on 5 instances is exactly the threshold; noise: 20 % per second.
    ticks, _ = drive_eas(scaler(), noisy(500, 0.2, 1260, seed), 1260, replicas=5)
    assert changes([t for t in ticks if 60 <= t.time < 660]) <= 2  # bound asserted: 2 per 10 minutes
    assert changes([t for t in ticks if t.time >= 660]) <= 2


def test_it_follows_a_compressed_day_within_the_tolerance():
    period = 3600
    trace = diurnal(100, 2000, period)
    ticks, _ = drive_eas(scaler(), trace, 2 * period, replicas=1)
    for tick in ticks[15:]:
        # Instances never carry more than the threshold plus tolerance plus the 30 s averaging lag.
        assert trace(tick.time) / tick.desired <= 120, tick.time
    assert at(ticks, period // 2).desired == 20
    assert at(ticks, period).desired <= 3  # the trough, 300 s of scale-down window behind
