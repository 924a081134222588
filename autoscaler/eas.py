"""The EAS metric scaler (the service file's `autoscaler` section), as pure functions.

Like the Kubernetes HPA: per metric `desired = ceil(current × value / threshold)`, the largest recommendation
wins, nothing changes inside a 10 % tolerance band, and stabilization windows damp changes: a scale-down takes
the highest recommendation of the last 300 s, a scale-up the lowest of the last 0 s (i.e. at once).

The caller keeps one `EasState` per version, feeds per-second samples with `eas_observe` and calls `eas_decide`
every 2 seconds. Sample units: "qps" the version's requests in that second (all instances together); "cpu"
and "gpu[util]" the mean utilization % across its instances; "queue[backlog]" the requests waiting in its
queue; "concurrency" the requests in flight (all instances together); "llm[waiting]" the requests waiting in
the LLM engines' own queues (all ready instances together, autoscaler/llm.py). Each decision averages the last
`metric_window` seconds (30 s by default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .decision import Decision
from .window import SecondWindow, window_add, window_average, window_start, window_trim

METRIC_WINDOW_SECONDS = 30
TOLERANCE = 0.1
DECISION_TICK_SECONDS = 2
# Totals that Ferry divides by the instance count to compare with a per-instance threshold.
PER_INSTANCE_TOTALS = ("qps", "queue[backlog]", "concurrency", "llm[waiting]")
# Gauges: an unreported second is unknown, not zero (an engine reading left out as stale is not an empty queue).
GAUGES = ("cpu", "gpu[util]", "llm[waiting]")
# Samples that mean the version is wanted: the idle clock towards zero restarts on any of them above 0. A
# stream open for minutes is counted as a request only when it ends, but it is in flight every second.
# An asynchronous service's backlog too: entries waiting in its input queue want instances (docs/async.md).
BACKLOG_METRIC = "queue[backlog]"
ACTIVITY = ("qps", "concurrency", "llm[waiting]", BACKLOG_METRIC)


@dataclass(frozen=True)
class ScaleStrategy:
    """One `scaleStrategies` entry: scale so that `metric` stays near `threshold` per instance.

    service: EAS's optional other service whose metric drives this one (e.g. a queue); the caller measures it.
    """

    metric: str
    threshold: float
    service: str | None = None


@dataclass(frozen=True)
class EasScalerSettings:
    """The `autoscaler` section of a service file, with EAS's defaults filled in.

    scale_up_window / scale_down_window: behavior.scaleUp / scaleDown.stabilizationWindowSeconds (0 s / 300 s).
    zero_grace: behavior.onZero.scaleDownGracePeriodSeconds, idle seconds before scaling to zero (min 0 only).
    activation_replicas: behavior.onZero.scaleUpActivationReplicas, instances started when traffic reaches a
        version at zero.
    metric_window: seconds each decision averages (Ferry's choice; not in the service file).
    """

    min_replicas: int = 1
    max_replicas: int = 1
    strategies: tuple[ScaleStrategy, ...] = ()
    scale_up_window: int = 0
    scale_down_window: int = 300
    zero_grace: int = 300
    activation_replicas: int = 1
    metric_window: int = METRIC_WINDOW_SECONDS
    tolerance: float = TOLERANCE

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError("need 0 <= min <= max and max >= 1")
        if any(s.threshold <= 0 for s in self.strategies):
            raise ValueError("every threshold must be > 0")
        if min(self.scale_up_window, self.scale_down_window, self.zero_grace) < 0 or self.metric_window < 1:
            raise ValueError("windows must be >= 0 seconds (metric_window >= 1)")

    @classmethod
    def from_autoscaler(cls, section: Mapping) -> EasScalerSettings:
        """From the service file's (already validated) `autoscaler` section."""
        behavior = section.get("behavior") or {}
        on_zero = behavior.get("onZero") or {}
        return cls(
            min_replicas=int(section.get("min", 1)),
            max_replicas=int(section["max"]),
            strategies=tuple(
                ScaleStrategy(s["metricName"], float(s["threshold"]), s.get("service"))
                for s in section.get("scaleStrategies") or ()
            ),
            scale_up_window=int((behavior.get("scaleUp") or {}).get("stabilizationWindowSeconds", 0)),
            scale_down_window=int((behavior.get("scaleDown") or {}).get("stabilizationWindowSeconds", 300)),
            zero_grace=int(on_zero.get("scaleDownGracePeriodSeconds", 300)),
            activation_replicas=max(1, int(on_zero.get("scaleUpActivationReplicas", 1))),
        )


@dataclass(frozen=True)
class EasState:
    """What the EAS scaler remembers between ticks, for one version.

    windows: per-second samples by metric name. recommendations: (time, recommendation) of the ticks within
    the longer stabilization window. last_request_at: the last second with requests (qps, in flight or
    waiting above 0); None if none yet. started_at: when the scaler started watching; idleness counts from
    here until the first request.
    """

    windows: tuple[tuple[str, SecondWindow], ...] = ()
    recommendations: tuple[tuple[float, int], ...] = ()
    last_request_at: float | None = None
    started_at: float | None = None

    def idle_seconds(self, now: float) -> float:
        since = self.last_request_at if self.last_request_at is not None else self.started_at
        return now - since


def eas_new_state(now: float) -> EasState:
    """State for a version the scaler starts watching at `now` (its idle clock starts here)."""
    return EasState(started_at=now)


def eas_activated(state: EasState, now: float) -> EasState:
    """The activator woke the version from zero at `now`: a request is waiting, which counts as one, so the
    idle rule does not send the version straight back to zero before that request reaches the metrics."""
    last = state.last_request_at
    return replace(state, last_request_at=now if last is None else max(last, now))


def eas_observe(state: EasState, second: float, metrics: Mapping[str, float]) -> EasState:
    """Records one second's samples, e.g. {"qps": 42} from the gateway or {"cpu": 63.0} from the nodes."""
    windows = dict(state.windows)
    for name, value in metrics.items():
        window = windows.get(name) or window_start(SecondWindow(), state.started_at if state.started_at
                                                     is not None else second)
        windows[name] = window_add(window, second, value)
    return replace(state, windows=tuple(sorted(windows.items())),
                   last_request_at=_latest_request(state.last_request_at, second, metrics))


def eas_decide(
    settings: EasScalerSettings,
    state: EasState,
    *,
    now: float,
    current_replicas: int,
    metrics: Mapping[str, float] | None = None,
) -> tuple[EasState, Decision]:
    """One tick: the new state and how many instances the version should have.

    current_replicas: the instances the version has now (the last count applied). metrics: values measured
    elsewhere for this tick, in the same units as eas_observe's samples; they replace the observed average
    of the same name.
    """
    state = _prepared(settings, state, now, metrics or {})
    measured = {**_averages(settings, state, now), **(metrics or {})}
    observed = _observed(settings, current_replicas, measured)
    if current_replicas <= 0:
        return state, replace(_from_zero(settings, state, now), metrics=observed)
    recommendations = _recommendations(settings, current_replicas, measured)
    if recommendations:
        name, raw = max(recommendations, key=lambda pair: pair[1])
        clauses = [_explain(settings, name, current_replicas, measured, raw)]
    else:
        raw, clauses = current_replicas, ["no metric measured yet: keeping the current count"]
    raw = max(raw, 1)  # Zero comes only from the idle rule below, never from a low CPU reading.
    stabilized, window_clause = _stabilized(settings, state, now, current_replicas, raw)
    clauses += window_clause
    state = _recorded(settings, state, now, raw)
    desired, bound_clause = _bounded(settings, state, now, stabilized)
    clauses += bound_clause
    return state, Decision(
        desired=desired,
        reason="; ".join(clauses) + f" → {desired}",
        recommendations=tuple(recommendations),
        metrics=observed,
    )


def _prepared(settings: EasScalerSettings, state: EasState, now: float, metrics: Mapping[str, float]) -> EasState:
    started = now if state.started_at is None else state.started_at
    windows = tuple((name, window_trim(window, now, settings.metric_window)) for name, window in state.windows)
    return replace(state, windows=windows, started_at=started,
                   last_request_at=_latest_request(state.last_request_at, now, metrics))


def _latest_request(last: float | None, second: float, metrics: Mapping[str, float]) -> float | None:
    if all(metrics.get(name, 0) <= 0 for name in ACTIVITY):
        return last
    return second if last is None else max(last, second)


def _averages(settings: EasScalerSettings, state: EasState, now: float) -> dict[str, float]:
    averages = {}
    for name, window in state.windows:
        value = window_average(window, now, settings.metric_window, missing_is_zero=name not in GAUGES)
        if value is not None:
            averages[name] = value
    return averages


def _per_instance(metric: str, value: float, current: int) -> float:
    return value / current if metric in PER_INSTANCE_TOTALS else value


def _observed(settings: EasScalerSettings, current: int,
              measured: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """Each strategy's value in its threshold's units; at zero a total counts as one instance's."""
    return tuple((s.metric, _per_instance(s.metric, measured[s.metric], max(current, 1)))
                 for s in settings.strategies if s.metric in measured)


def _ratio(strategy: ScaleStrategy, current: int, measured: Mapping[str, float]) -> float:
    return _per_instance(strategy.metric, measured[strategy.metric], current) / strategy.threshold


def _within_tolerance(settings: EasScalerSettings, ratio: float) -> bool:
    return round(abs(ratio - 1), 9) <= settings.tolerance  # rounded: 1.1 - 1 is 0.10000000000000009


def _recommendations(
    settings: EasScalerSettings, current: int, measured: Mapping[str, float]
) -> list[tuple[str, int]]:
    """Per metric: ceil(current × usage / threshold), or the current count inside the tolerance band."""
    recommendations = []
    for strategy in settings.strategies:
        if strategy.metric not in measured:
            continue
        ratio = _ratio(strategy, current, measured)
        within = _within_tolerance(settings, ratio)
        recommendations.append((strategy.metric, current if within else _ceil(current * ratio)))
    return recommendations


def _explain(settings: EasScalerSettings, metric: str, current: int, measured: Mapping[str, float], raw: int) -> str:
    strategy = next(s for s in settings.strategies if s.metric == metric)
    ratio = _ratio(strategy, current, measured)
    unit = " per instance" if metric in PER_INSTANCE_TOTALS else " %"
    text = (f"{metric} {ratio * strategy.threshold:.1f}{unit} is {100 * ratio:.0f} % of threshold "
            f"{strategy.threshold:g} on {current} instances")
    if _within_tolerance(settings, ratio):
        return text + f" (within the {settings.tolerance * 100:g} % tolerance)"
    return text + f": wants {raw}"


def _stabilized(
    settings: EasScalerSettings, state: EasState, now: float, current: int, raw: int
) -> tuple[int, list[str]]:
    """HPA stabilization: never above the lowest recommendation of the scale-up window, never below the
    highest of the scale-down window. A brief spike or dip inside a window changes nothing."""
    up_limit = min([raw] + [r for t, r in state.recommendations if t > now - settings.scale_up_window])
    down_limit = max([raw] + [r for t, r in state.recommendations if t > now - settings.scale_down_window])
    result = current
    if result < up_limit:
        result = up_limit
    if result > down_limit:
        result = down_limit
    if raw > result:
        return result, [f"scale-up held to {result} by the {settings.scale_up_window} s scale-up window"]
    if raw < result:
        return result, [f"scale-down held to {result}: highest recommendation of the last "
                        f"{settings.scale_down_window} s"]
    return result, []


def _recorded(settings: EasScalerSettings, state: EasState, now: float, raw: int) -> EasState:
    keep = max(settings.scale_up_window, settings.scale_down_window)
    recent = tuple(entry for entry in state.recommendations if entry[0] > now - keep)
    return replace(state, recommendations=recent + ((now, raw),))


def _bounded(settings: EasScalerSettings, state: EasState, now: float, desired: int) -> tuple[int, list[str]]:
    idle = state.idle_seconds(now)
    if settings.min_replicas == 0 and idle >= _zero_grace(settings):
        return 0, [f"no requests for {idle:.0f} s ≥ {_zero_grace(settings):g} s: scaling to zero"]
    low = max(settings.min_replicas, 1)
    if desired < low:
        return low, [f"raised to min {low}"]
    if desired > settings.max_replicas:
        return settings.max_replicas, [f"capped at max {settings.max_replicas}"]
    return desired, []


def _from_zero(settings: EasScalerSettings, state: EasState, now: float) -> Decision:
    """At zero there is no per-instance value to divide; traffic wakes the version with the activation count."""
    if settings.min_replicas > 0:
        low = settings.min_replicas
        return Decision(desired=low, reason=f"at zero below min {low} → {low}")
    # Same rule as scaling to zero: a request within the grace period means the version is wanted.
    if state.last_request_at is not None and state.idle_seconds(now) < _zero_grace(settings):
        wake = min(max(settings.activation_replicas, 1), settings.max_replicas)
        return Decision(desired=wake, reason=f"requests at zero: starting {wake} (onZero activation) → {wake}")
    return Decision(desired=0, reason="at zero with no requests → 0")


def _zero_grace(settings: EasScalerSettings) -> float:
    """At least one decision tick, so that a request seen in the last tick always counts as activity."""
    return max(settings.zero_grace, DECISION_TICK_SECONDS)


def _ceil(value: float) -> int:
    """ceil that ignores float noise: 3 × (200 / 3) / 100 must give 2, not 3."""
    return math.ceil(round(value, 9))
