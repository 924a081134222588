"""Knative annotations <-> KpaSettings."""

import pytest

from autoscaler import KpaSettings, kpa_annotations, kpa_settings_from_annotations, parse_duration

K = "autoscaling.knative.dev/"


def test_it_reads_every_annotation_ferry_mirrors():
    settings = kpa_settings_from_annotations({
        K + "metric": "rps",
        K + "target": "150",
        K + "target-utilization-percentage": "80",
        K + "window": "2m",
        K + "panic-window-percentage": "20",
        K + "panic-threshold-percentage": "300",
        K + "max-scale-up-rate": "10",
        K + "max-scale-down-rate": "4",
        K + "scale-down-delay": "1m30s",
        K + "min-scale": "1",
        K + "max-scale": "9",
        K + "initial-scale": "2",
        K + "activation-scale": "3",
        K + "scale-to-zero-pod-retention-period": "45s",
        "unrelated/annotation": "ignored",
    })
    assert settings == KpaSettings(
        metric="rps", target=150, target_utilization=0.8, stable_window=120, panic_window_percentage=20,
        panic_threshold_percentage=300, max_scale_up_rate=10, max_scale_down_rate=4, scale_down_delay=90,
        min_scale=1, max_scale=9, initial_scale=2, activation_scale=3, scale_to_zero_pod_retention=45,
    )
    assert settings.panic_window == 24
    assert settings.target_value == pytest.approx(120)


def test_it_defaults_everything_without_annotations():
    assert kpa_settings_from_annotations({}) == KpaSettings()
    assert kpa_annotations(KpaSettings()) == {}


def test_it_renders_what_differs_and_reads_it_back():
    settings = KpaSettings(target=50, stable_window=30, min_scale=2, scale_down_delay=600)
    annotations = kpa_annotations(settings)
    assert annotations == {K + "target": "50", K + "window": "30s", K + "min-scale": "2",
                           K + "scale-down-delay": "600s"}
    assert kpa_settings_from_annotations(annotations) == settings


def test_it_names_the_annotation_of_a_bad_value():
    with pytest.raises(ValueError, match="autoscaling.knative.dev/window"):
        kpa_settings_from_annotations({K + "window": "soon"})
    with pytest.raises(ValueError, match="stable_window"):
        kpa_settings_from_annotations({K + "window": "2s"})


@pytest.mark.parametrize("text, seconds", [("6s", 6), ("1m30s", 90), ("1h", 3600), ("1500ms", 2), ("60", 60)])
def test_it_parses_go_durations(text, seconds):
    assert parse_duration(text) == seconds
