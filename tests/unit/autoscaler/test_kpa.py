"""The KPA behaviours docs/autoscaling.md describes (Knative Serving's autoscaler), one by one, then whole traces."""

import math
from dataclasses import replace

import pytest

from autoscaler import (KpaSettings, kpa_activated, kpa_decide, kpa_new_state, kpa_observe,
                                 kpa_restart_state)
from tests.unit.autoscaler.traces import at, burst, changes, diurnal, drive_kpa, idle, noisy, ramp, step


def observed(samples, start=0, state=None):
    """A state that has seen samples[i] at second start + i."""
    state = state if state is not None else kpa_new_state(start)
    for offset, value in enumerate(samples):
        state = kpa_observe(state, start + offset, value)
    return state


def decide(settings, samples, *, ready, **options):
    """One decision right after the last sample."""
    state = observed(samples)
    return kpa_decide(settings, state, now=len(samples) - 1, ready_pods=ready, **options)


# --- The formula -------------------------------------------------------------------------------------------


def test_it_sizes_pods_by_the_stable_average_over_target_times_utilization():
    settings = KpaSettings()
    assert settings.target_value == pytest.approx(70)
    _, decision = decide(settings, [350] * 60, ready=5)
    assert decision.desired == 5
    assert decision.stable_average == pytest.approx(350)
    assert "concurrency 350.0 over 60 s / target 70 per pod = 5 pods" in decision.reason


def test_it_rounds_a_partial_pod_up():
    _, decision = decide(KpaSettings(), [351] * 60, ready=5)
    assert decision.desired == 6


def test_it_uses_200_rps_per_pod_for_the_rps_metric():
    settings = KpaSettings(metric="rps")
    assert settings.target_value == pytest.approx(140)
    _, decision = decide(settings, [500] * 60, ready=4)
    assert decision.desired == 4  # ceil(500 / 140)


def test_it_averages_a_young_window_over_the_seconds_seen_so_far():
    # Ten seconds after the start, the 60 s average is over those ten seconds (Knative does the same).
    _, decision = decide(KpaSettings(), [140] * 10, ready=2)
    assert decision.stable_average == pytest.approx(140)
    assert decision.desired == 2


def test_it_counts_a_second_without_a_sample_as_no_load():
    state = observed([140] * 30)  # then 30 silent seconds
    _, decision = kpa_decide(KpaSettings(), state, now=59, ready_pods=2)
    assert decision.stable_average == pytest.approx(70)


# --- Panic -------------------------------------------------------------------------------------------------


def test_it_enters_panic_when_the_panic_window_needs_200_percent_of_the_ready_pods():
    settings = KpaSettings()
    _, calm = decide(settings, [140] * 54 + [210] * 6, ready=2)  # panic window: 3 pods = 150 %
    _, panicking = decide(settings, [140] * 54 + [280] * 6, ready=2)  # panic window: 4 pods = 200 %
    assert not calm.panicking and calm.desired == 3
    assert panicking.panicking
    assert panicking.desired == 4  # the larger of stable (3) and panic (4)
    assert panicking.panic_average == pytest.approx(280)
    assert "panic (entered)" in panicking.reason and "200 % of 2 ready" in panicking.reason


def test_it_leaves_panic_only_after_a_full_stable_window_below_the_threshold():
    ticks, _ = drive_kpa(KpaSettings(), burst(70, 700, start=100, length=10), 400)
    over = [t.time for t in ticks if "(≥ panic threshold" in t.decision.reason]
    last_over = max(over)
    assert min(over) == 100 and at(ticks, 100).panicking
    assert all(t.panicking for t in ticks if min(over) <= t.time <= last_over + 60)
    assert not at(ticks, last_over + 62).panicking
    assert "panic over" in at(ticks, last_over + 62).decision.reason


def test_it_never_scales_down_while_panicking():
    ticks, _ = drive_kpa(KpaSettings(), burst(140, 1400, start=100, length=10), 400, ready=2)
    in_panic = [t.desired for t in ticks if t.panicking]
    assert in_panic == sorted(in_panic)  # never decreases
    assert max(in_panic) == 20
    # The burst ended at 110, yet the peak is kept until the panic ends.
    assert all(t.desired == 20 for t in ticks if t.panicking and t.time > 120)
    assert any("no scale-down in panic: keeping 20" in t.decision.reason for t in ticks)


def test_it_restarts_in_panic_with_more_than_one_ready_pod():
    settings = KpaSettings()
    state = kpa_restart_state(5, 1000)
    ticks, _ = drive_kpa(settings, idle(), 120, ready=5, state=state, start=1000)
    # No history reads as no load, yet the 5 pods stay for a stable window: the restart is not a scale-down.
    assert all(t.desired == 5 and t.panicking for t in ticks if t.time <= 1060)
    assert not at(ticks, 1062).panicking
    assert at(ticks, 1062).desired == 2  # then the usual halving


def test_it_restarts_calm_with_one_ready_pod():
    state = kpa_restart_state(1, 1000)
    assert not state.panicking
    assert kpa_restart_state(2, 1000).panicking


# --- Rates and delay ---------------------------------------------------------------------------------------


def test_it_limits_a_scale_up_to_the_max_scale_up_rate():
    ticks, _ = drive_kpa(KpaSettings(max_scale_up_rate=2), step(70, 700, at=60), 120, ready=1)
    after = [t.desired for t in ticks if t.time >= 60][:5]
    assert after == [2, 4, 8, 10, 10]  # rate 2 from 1 ready pod allows 2, then doubling
    assert "limited to 2 by max-scale-up-rate 2" in at(ticks, 60).decision.reason


def test_it_scales_up_at_once_with_the_default_rate():
    ticks, _ = drive_kpa(KpaSettings(), step(70, 700, at=60), 80, ready=1)
    assert max(t.desired for t in ticks if t.time <= 66) == 10  # once the 6 s panic window is all burst


def test_it_halves_at_most_per_tick_with_the_default_max_scale_down_rate():
    ticks, _ = drive_kpa(KpaSettings(), idle(), 20, ready=10)
    assert [t.desired for t in ticks[:3]] == [5, 2, 1]
    assert "limited to 5 by max-scale-down-rate 2" in ticks[0].decision.reason


def test_it_drops_an_unreachable_version_without_the_scale_down_rate():
    state = observed([0] * 10)
    _, reachable = kpa_decide(KpaSettings(), state, now=9, ready_pods=10)
    _, unreachable = kpa_decide(KpaSettings(), state, now=9, ready_pods=10, reachable=False)
    assert reachable.desired == 5
    assert unreachable.desired == 1  # straight down; zero still waits for the grace period


def test_it_keeps_the_highest_decision_of_the_scale_down_delay():
    # A short stable window, no rate limit and fixed ready pods isolate the delay from everything else.
    plain = KpaSettings(stable_window=6, max_scale_down_rate=1000, scale_down_tolerance=0)
    delayed = KpaSettings(stable_window=6, max_scale_down_rate=1000, scale_down_tolerance=0, scale_down_delay=30)
    trace = step(700, 70, at=60)
    without, _ = drive_kpa(plain, trace, 160, ready=10, follow=False)
    with_delay, _ = drive_kpa(delayed, trace, 160, ready=10, follow=False)
    for tick in with_delay:
        recent = [t.desired for t in without if tick.time - 30 < t.time <= tick.time]
        assert tick.desired == max(recent), tick.time
    first_low = min(t.time for t in without if t.desired == 1)
    # The last higher decision was at first_low - 2; it stops counting 30 s after it was made.
    assert min(t.time for t in with_delay if t.desired == 1) == first_low - 2 + 30
    assert "scale-down delayed" in at(with_delay, first_low).decision.reason


# --- Bounds ------------------------------------------------------------------------------------------------


def test_it_never_goes_below_min_scale():
    ticks, _ = drive_kpa(KpaSettings(min_scale=2), idle(), 300, ready=4)
    assert min(t.desired for t in ticks) == 2
    assert "raised to min-scale 2" in ticks[-1].decision.reason


def test_it_never_goes_above_max_scale():
    ticks, _ = drive_kpa(KpaSettings(max_scale=3), step(70, 7000, at=10), 100)
    assert max(t.desired for t in ticks) == 3
    assert "capped at max-scale 3" in ticks[-1].decision.reason


def test_it_unbounds_max_scale_zero():
    ticks, _ = drive_kpa(KpaSettings(max_scale=0), step(70, 7000, at=10), 30)
    assert max(t.desired for t in ticks) == 100


def test_it_holds_initial_scale_until_first_reached():
    settings = KpaSettings(initial_scale=3)
    state, first = kpa_decide(settings, kpa_new_state(0), now=0, ready_pods=0)
    assert first.desired == 3 and "initial-scale 3" in first.reason
    state, still = kpa_decide(settings, state, now=2, ready_pods=2)
    assert still.desired == 3
    state, reached = kpa_decide(settings, state, now=4, ready_pods=3)
    assert state.scale_target_initialized
    assert reached.desired == 1  # no load: halving from 3 ready pods, initial scale no longer applies


def test_it_starts_at_activation_scale_from_zero():
    _, decision = decide(KpaSettings(activation_scale=3), [10] * 4, ready=0)
    assert decision.desired == 3


# --- Scale to zero -----------------------------------------------------------------------------------------


def fast():
    """A 6 s stable window, so that the average reaches zero soon after the last request."""
    return dict(stable_window=6)


def test_it_scales_to_zero_only_after_the_grace_period_without_requests():
    ticks, _ = drive_kpa(KpaSettings(**fast()), step(70, 0, at=20), 120)  # last request at second 19
    assert at(ticks, 48).desired == 1  # idle 29 s
    assert "idle 29 s < 30 s before scaling to zero: keeping 1 pod" in at(ticks, 48).decision.reason
    assert at(ticks, 50).desired == 0  # idle 31 s
    assert all(t.desired == 0 for t in ticks if t.time >= 50)


def test_it_waits_for_the_pod_retention_period_when_longer_than_the_grace():
    ticks, _ = drive_kpa(KpaSettings(**fast(), scale_to_zero_pod_retention=50), step(70, 0, at=20), 120)
    assert at(ticks, 68).desired == 1
    assert at(ticks, 70).desired == 0


def test_it_does_not_scale_to_zero_without_the_activator_in_the_path():
    ticks, _ = drive_kpa(KpaSettings(**fast()), step(70, 0, at=20), 300, activator_in_path=False)
    assert min(t.desired for t in ticks) == 1
    assert "activator is not in the request path" in ticks[-1].decision.reason


def test_it_does_not_scale_to_zero_with_min_scale_one():
    ticks, _ = drive_kpa(KpaSettings(**fast(), min_scale=1), step(70, 0, at=20), 300)
    assert min(t.desired for t in ticks) == 1


def test_it_stays_at_zero_while_idle_and_wakes_on_traffic():
    ticks, _ = drive_kpa(KpaSettings(**fast()), step(0, 35, at=100), 110)
    assert at(ticks, 98).desired == 0
    assert at(ticks, 100).desired == 1


def test_it_keeps_the_pods_the_activator_woke_while_they_start():
    # Idle for minutes, at zero; the activator wakes it at second 300 before any request is in the metrics.
    state = replace(observed([0] * 300), scale_target_initialized=True)
    _, asleep = kpa_decide(KpaSettings(**fast(), activation_scale=2), state, now=300, ready_pods=0)
    assert asleep.desired == 0 and "already at zero" in asleep.reason
    woken = kpa_activated(state, 300)
    for now in (300, 302, 310, 328):
        _, decision = kpa_decide(KpaSettings(**fast(), activation_scale=2), woken, now=now, ready_pods=0)
        assert decision.desired == 2, (now, decision.reason)
    assert "keeping 2 pod (starting)" in decision.reason
    _, later = kpa_decide(KpaSettings(**fast(), activation_scale=2), woken, now=331, ready_pods=0)
    assert later.desired == 0  # nothing came of it within the grace period


def test_a_restarted_autoscaler_leaves_a_version_at_zero_asleep():
    state = kpa_restart_state(0, 1000, at_zero=True)
    _, decision = kpa_decide(KpaSettings(**fast()), state, now=1002, ready_pods=0)
    assert decision.desired == 0
    running = kpa_restart_state(1, 1000)
    _, kept = kpa_decide(KpaSettings(**fast()), running, now=1002, ready_pods=1)
    assert kept.desired == 1  # a running version gets the whole grace period from the restart


# --- Excess burst capacity ---------------------------------------------------------------------------------


def test_it_reports_a_negative_burst_capacity_when_a_burst_would_not_fit():
    _, small = decide(KpaSettings(), [50] * 60, ready=1)
    assert small.excess_burst_capacity == math.floor(1 * 100 - 211 - 50)
    assert small.activator_needed
    _, large = decide(KpaSettings(), [100] * 60, ready=5)
    assert large.excess_burst_capacity == 500 - 211 - 100
    assert not large.activator_needed


def test_it_reports_the_burst_capacity_modes_zero_and_minus_one():
    _, only_at_zero = decide(KpaSettings(target_burst_capacity=0), [50] * 60, ready=1)
    _, always = decide(KpaSettings(target_burst_capacity=-1), [50] * 60, ready=5)
    assert only_at_zero.excess_burst_capacity == 0 and not only_at_zero.activator_needed
    assert always.excess_burst_capacity == -1 and always.activator_needed


# --- Settings ----------------------------------------------------------------------------------------------


def test_it_derives_the_panic_window_from_its_percentage():
    assert KpaSettings().panic_window == 6
    assert KpaSettings(stable_window=120, panic_window_percentage=25).panic_window == 30


@pytest.mark.parametrize(
    "field, value",
    [("metric", "latency"), ("stable_window", 5), ("stable_window", 3601), ("panic_threshold_percentage", 100),
     ("max_scale_down_rate", 1), ("target", 0), ("activation_scale", 0)],
)
def test_it_rejects_settings_outside_knatives_ranges(field, value):
    with pytest.raises(ValueError):
        KpaSettings(**{field: value})


def test_it_rejects_min_scale_above_max_scale():
    with pytest.raises(ValueError, match="min_scale"):
        KpaSettings(min_scale=3, max_scale=2)


# --- Traces ------------------------------------------------------------------------------------------------


def test_it_follows_a_step_through_panic():
    ticks, _ = drive_kpa(KpaSettings(), step(70, 700, at=120), 360)
    assert at(ticks, 120).panicking
    assert max(t.desired for t in ticks if t.time <= 126) == 10
    assert max(t.desired for t in ticks) == 10
    assert not ticks[-1].panicking and ticks[-1].desired == 10


def test_it_absorbs_a_burst_and_then_steps_down_at_most_by_half():
    # The base of 120 needs 2 pods at 86 % of target, inside the scale-down tolerance.
    ticks, _ = drive_kpa(KpaSettings(), burst(120, 1400, start=200, length=10), 600, ready=2)
    assert max(t.desired for t in ticks) == 20
    after_panic = [t.desired for t in ticks if t.time > 200 and not t.panicking]
    assert after_panic[-1] == 2
    for before, after in zip(after_panic, after_panic[1:]):
        assert after >= before // 2


def test_it_tracks_a_gentle_ramp_without_panicking():
    trace = ramp(700, 2100, duration=600)
    ticks, _ = drive_kpa(KpaSettings(), trace, 700, ready=10)
    assert not any(t.panicking for t in ticks)
    desired = [t.desired for t in ticks]
    assert desired == sorted(desired)
    for tick in ticks:
        needed = math.ceil(trace(tick.time) / 70)
        assert needed - 1 <= tick.desired <= needed, tick.time  # the stable window lags about 30 s


def test_it_goes_to_zero_on_an_idle_trace_and_stays_there():
    ticks, _ = drive_kpa(KpaSettings(), idle(), 300)
    assert not any(t.panicking for t in ticks)
    assert at(ticks, 28).desired == 1
    assert all(t.desired == 0 for t in ticks if t.time >= 30)


def test_it_follows_a_compressed_day_without_running_pods_over_capacity():
    period = 1200  # a day in 20 minutes
    trace = diurnal(70, 1400, period)
    ticks, _ = drive_kpa(KpaSettings(), trace, 2 * period)
    for tick in ticks[30:]:
        assert tick.desired * 100 >= trace(tick.time), tick.time  # never over the 100 per-pod capacity
    assert at(ticks, period // 2).desired >= 19  # peak needs 20
    assert at(ticks, period).desired <= 3  # trough needs 1
    # Panic only at the bottom, where one pod's worth of extra load is already 200 % of one ready pod.
    assert all(t.ready <= 2 for t in ticks if t.panicking)


@pytest.mark.parametrize("seed", range(5))
def test_it_does_not_flap_on_noise_at_a_pod_boundary(seed):
    # 350 is exactly 5 pods of 70: the worst case. Noise: 20 % standard deviation per second.
    ticks, _ = drive_kpa(KpaSettings(), noisy(350, 0.2, 1260, seed), 1260, ready=5)
    ten_minutes = [t for t in ticks if t.time >= 60 and t.time < 660]
    assert changes(ten_minutes) <= 2  # bound asserted: at most 2 changes in 10 minutes
    assert changes([t for t in ticks if t.time >= 660]) == 0


def test_it_flaps_like_knative_without_the_scale_down_tolerance():
    # Knative's exact rule (tolerance 0) adds and removes the sixth pod every few ticks on the same trace;
    # this is why Ferry's default has a tolerance.
    ticks, _ = drive_kpa(KpaSettings(scale_down_tolerance=0), noisy(350, 0.2, 660, 0), 660, ready=5)
    assert changes([t for t in ticks if t.time >= 60]) > 10
