"""Knative annotation names <-> KpaSettings. Pure.

Ferry reads the `autoscaling.knative.dev/*` names Knative users already know, and can render them back for a
Knative cluster. Durations are Go-style ("60s", "1m30s", "1h"); percentages are plain numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import fields

from .kpa import KpaSettings

PREFIX = "autoscaling.knative.dev/"

# annotation (without the prefix) -> (KpaSettings field, parse, render)
_Parse = Callable[[str], object]
_Render = Callable[[object], str]


def parse_duration(text: str) -> int:
    """Whole seconds of a Go duration ("6s", "1m30s", "1h", "1500ms" -> 1); a bare number is seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return round(float(text))
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f'"{text}" is not a duration such as "60s", "1m30s" or "1h"')
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return round(sum(float(number) * scale[unit] for number, unit in parts))


def _seconds(value: object) -> str:
    return f"{value}s"


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _utilization_from_percent(text: str) -> float:
    return float(text) / 100


def _utilization_to_percent(value: object) -> str:
    return f"{float(value) * 100:g}"


ANNOTATIONS: dict[str, tuple[str, _Parse, _Render]] = {
    "metric": ("metric", str.strip, str),
    "target": ("target", float, _number),
    "target-utilization-percentage": ("target_utilization", _utilization_from_percent, _utilization_to_percent),
    "window": ("stable_window", parse_duration, _seconds),
    "panic-window-percentage": ("panic_window_percentage", float, _number),
    "panic-threshold-percentage": ("panic_threshold_percentage", float, _number),
    # Cluster-wide keys of Knative's config-autoscaler ConfigMap; Ferry also takes them per service.
    "max-scale-up-rate": ("max_scale_up_rate", float, _number),
    "max-scale-down-rate": ("max_scale_down_rate", float, _number),
    "scale-to-zero-grace-period": ("scale_to_zero_grace", parse_duration, _seconds),
    "scale-down-delay": ("scale_down_delay", parse_duration, _seconds),
    "min-scale": ("min_scale", int, _number),
    "max-scale": ("max_scale", int, _number),
    "initial-scale": ("initial_scale", int, _number),
    "activation-scale": ("activation_scale", int, _number),
    "scale-to-zero-pod-retention-period": ("scale_to_zero_pod_retention", parse_duration, _seconds),
    "target-burst-capacity": ("target_burst_capacity", float, _number),
}


def kpa_settings_from_annotations(annotations: Mapping[str, str]) -> KpaSettings:
    """KpaSettings from `autoscaling.knative.dev/*` annotations; others are ignored, absent ones default.

    Raises ValueError naming the annotation for a value that does not parse or is out of range.
    """
    values: dict[str, object] = {}
    for name, (field_name, parse, _) in ANNOTATIONS.items():
        raw = annotations.get(PREFIX + name)
        if raw is None:
            continue
        try:
            values[field_name] = parse(str(raw))
        except ValueError as error:
            raise ValueError(f"{PREFIX}{name}: {error}") from None
    return KpaSettings(**values)


def kpa_annotations(settings: KpaSettings) -> dict[str, str]:
    """The annotations of the settings that differ from Knative's defaults (what to put on a Revision)."""
    defaults = KpaSettings()
    differing = {f.name for f in fields(KpaSettings) if getattr(settings, f.name) != getattr(defaults, f.name)}
    return {
        PREFIX + name: render(getattr(settings, field_name))
        for name, (field_name, _, render) in ANNOTATIONS.items()
        if field_name in differing
    }
