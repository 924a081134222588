"""Knative's Pod Autoscaler (KPA) decision, as pure functions.

The caller keeps one `KpaState` per service version, feeds it one sample per second with `kpa_observe` (the
version's total concurrency averaged over that second, or its request count for "rps") and calls `kpa_decide`
every 2 seconds. Nothing here reads a clock: `now` and `second` are seconds on any one clock (e.g. time.time()).

The algorithm follows Knative Serving's autoscaler (docs/autoscaling.md, "KPA"): stable and panic windows, a
panic mode that never scales down, scale-up and scale-down rate limits, a scale-down delay, min / max / initial scale
and scale to zero after a grace period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .decision import Decision
from .window import SecondWindow, window_add, window_average, window_start, window_trim

METRICS = ("concurrency", "rps")
DEFAULT_TARGETS = {"concurrency": 100.0, "rps": 200.0}


@dataclass(frozen=True)
class KpaSettings:
    """Per-version KPA settings; each field mirrors a Knative annotation (see docs/autoscaling.md).

    metric: autoscaling.knative.dev/metric, "concurrency" (requests in flight) or "rps" (requests per second).
    target: autoscaling.knative.dev/target, per pod; None means 100 for concurrency, 200 for rps.
    target_utilization: autoscaling.knative.dev/target-utilization-percentage / 100; the pods are sized so
        that each carries target × target_utilization, leaving headroom for bursts.
    stable_window: autoscaling.knative.dev/window, seconds (6 .. 3600).
    panic_window_percentage: autoscaling.knative.dev/panic-window-percentage, of the stable window (1 .. 100).
    panic_threshold_percentage: autoscaling.knative.dev/panic-threshold-percentage (110 .. 1000).
    max_scale_up_rate / max_scale_down_rate: config-autoscaler max-scale-up-rate / max-scale-down-rate; one
        tick grows to at most rate × ready pods and shrinks to at least ready pods / rate.
    scale_down_delay: autoscaling.knative.dev/scale-down-delay, seconds (0 .. 3600).
    min_scale / max_scale: autoscaling.knative.dev/min-scale / max-scale; max_scale 0 means unbounded.
    initial_scale: autoscaling.knative.dev/initial-scale, held until the version has had that many ready pods.
    activation_scale: autoscaling.knative.dev/activation-scale, the fewest pods when scaling from zero.
    scale_to_zero_grace: config-autoscaler scale-to-zero-grace-period, seconds.
    scale_to_zero_pod_retention: autoscaling.knative.dev/scale-to-zero-pod-retention-period, seconds.
    target_burst_capacity: autoscaling.knative.dev/target-burst-capacity (0: activator only at zero;
        -1: activator always in the path).
    scale_down_tolerance: Ferry's addition, no Knative counterpart (0 gives Knative's exact behaviour). A
        scale-down to n pods happens only once n pods would run at most (1 − tolerance) × target, so that a
        stable average hovering at a pod boundary does not add and remove a pod every few seconds.
    """

    metric: str = "concurrency"
    target: float | None = None
    target_utilization: float = 0.7
    stable_window: int = 60
    panic_window_percentage: float = 10.0
    panic_threshold_percentage: float = 200.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_down_delay: int = 0
    min_scale: int = 0
    max_scale: int = 0
    initial_scale: int = 1
    activation_scale: int = 1
    scale_to_zero_grace: int = 30
    scale_to_zero_pod_retention: int = 0
    target_burst_capacity: float = 211.0
    scale_down_tolerance: float = 0.1

    def __post_init__(self) -> None:
        problems = _settings_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def total_value(self) -> float:
        """What one pod is meant to carry at most (Knative's TotalValue)."""
        return self.target if self.target is not None else DEFAULT_TARGETS[self.metric]

    @property
    def target_value(self) -> float:
        """What the KPA sizes each pod for: target × utilization (70 for the default concurrency)."""
        return self.total_value * self.target_utilization

    @property
    def panic_window(self) -> int:
        """Seconds; 10 % of 60 s is 6 s. Never below one bucket."""
        return max(1, round(self.stable_window * self.panic_window_percentage / 100))


def _settings_problems(s: KpaSettings) -> list[str]:
    checks = [
        (s.metric in METRICS, f'metric must be one of {", ".join(METRICS)}, not "{s.metric}"'),
        (s.target is None or s.target > 0, "target must be > 0"),
        (0 < s.target_utilization <= 1, "target_utilization must be in (0, 1]"),
        (6 <= s.stable_window <= 3600, "stable_window must be 6 .. 3600 seconds"),
        (1 <= s.panic_window_percentage <= 100, "panic_window_percentage must be 1 .. 100"),
        (110 <= s.panic_threshold_percentage <= 1000, "panic_threshold_percentage must be 110 .. 1000"),
        (s.max_scale_up_rate > 1, "max_scale_up_rate must be > 1"),
        (s.max_scale_down_rate > 1, "max_scale_down_rate must be > 1"),
        (0 <= s.scale_down_delay <= 3600, "scale_down_delay must be 0 .. 3600 seconds"),
        (s.min_scale >= 0 and s.max_scale >= 0, "min_scale and max_scale must be >= 0"),
        (s.max_scale == 0 or s.min_scale <= s.max_scale, "min_scale must not exceed max_scale"),
        (s.initial_scale >= 0, "initial_scale must be >= 0"),
        (s.activation_scale >= 1, "activation_scale must be >= 1"),
        (s.scale_to_zero_grace >= 0 and s.scale_to_zero_pod_retention >= 0, "scale-to-zero times must be >= 0"),
        (s.target_burst_capacity >= -1, "target_burst_capacity must be >= -1"),
        (0 <= s.scale_down_tolerance < 1, "scale_down_tolerance must be in [0, 1)"),
    ]
    return [message for ok, message in checks if not ok]


@dataclass(frozen=True)
class KpaState:
    """What the KPA remembers between ticks, for one version.

    window: per-second samples, trimmed to the stable window at each decision.
    panic_started_at: when the current panic began; None when not panicking.
    last_over_threshold_at: the last tick the panic window was over the threshold (Knative's panicTime); panic
        ends a full stable window after it.
    max_panic_pods: the most pods desired during this panic; a panic never scales below it.
    recent_desired: (time, desired) of the ticks within the scale-down delay.
    last_active_at: the last second with traffic; scale to zero counts idleness from here.
    last_desired: the previous tick's decision (the scale-down tolerance compares with it).
    scale_target_initialized: the version has once had initial_scale ready pods (from then on initial_scale
        no longer applies).
    """

    window: SecondWindow = field(default_factory=SecondWindow)
    panic_started_at: float | None = None
    last_over_threshold_at: float | None = None
    max_panic_pods: int = 0
    recent_desired: tuple[tuple[float, int], ...] = ()
    last_active_at: float | None = None
    last_desired: int | None = None
    scale_target_initialized: bool = False

    @property
    def panicking(self) -> bool:
        return self.panic_started_at is not None


def kpa_new_state(now: float) -> KpaState:
    """State for a new version: nothing observed yet, idle since `now`, initial scale not reached."""
    return KpaState(window=window_start(SecondWindow(), now), last_active_at=now)


def kpa_restart_state(ready_pods: int, now: float, *, initialized: bool = True, at_zero: bool = False) -> KpaState:
    """State for a running version after the autoscaler itself restarted and lost its history.

    With more than one ready pod it starts in panic mode holding the current pods, as Knative does: without
    history the averages read low, and a scale-down now would be an accident. The panic ends as usual, a full
    stable window after the last burst (here: after the restart). A version at zero (`at_zero`) counts as idle
    for ever: the restart itself must not wake it.
    """
    state = replace(kpa_new_state(now), scale_target_initialized=initialized)
    if at_zero:
        return replace(state, last_active_at=-math.inf)
    if ready_pods <= 1:
        return state
    return replace(state, panic_started_at=now, last_over_threshold_at=now, max_panic_pods=ready_pods)


def kpa_activated(state: KpaState, now: float) -> KpaState:
    """The activator woke the version from zero at `now` (a request is waiting): that is activity, so the
    grace period starts again and the pods it asked for are kept while they start, even before the held
    request shows up in the metrics (Knative's activator reports such requests to the autoscaler)."""
    return replace(state, last_active_at=now if state.last_active_at is None else max(state.last_active_at, now))


def kpa_observe(state: KpaState, second: float, value: float) -> KpaState:
    """Records one second's sample: total concurrency of the version (or its request count for rps)."""
    active = state.last_active_at
    if value > 0:
        active = second if active is None else max(active, second)
    return replace(state, window=window_add(state.window, second, value), last_active_at=active)


def kpa_decide(
    settings: KpaSettings,
    state: KpaState,
    *,
    now: float,
    ready_pods: int,
    activator_in_path: bool = True,
    reachable: bool = True,
) -> tuple[KpaState, Decision]:
    """One tick of the KPA: returns the new state and how many pods the version should have.

    ready_pods: pods ready to serve now. activator_in_path: the activator fronts the version, so requests
    arriving at zero are held rather than lost (scale to zero requires it). reachable: some route sends
    traffic to the version; an unreachable version may drop below ready / max_scale_down_rate at once.
    """
    state = _prepared(settings, state, now)
    tick = _measured(settings, state, now, ready_pods, reachable)
    state, desired, clauses = _by_mode(settings, state, now, tick)
    state, desired, delayed = _delayed(settings, state, now, desired)
    state, desired, bounded = _bounded(settings, state, ready_pods, desired)
    desired, zero = _scale_to_zero(settings, state, now, ready_pods, desired, activator_in_path)
    state = replace(state, last_desired=desired)
    return state, Decision(
        desired=desired,
        reason="; ".join(clauses + delayed + bounded + zero) + f" → {desired}",
        panicking=state.panicking,
        stable_average=tick.stable,
        panic_average=tick.panic,
        excess_burst_capacity=_excess_burst_capacity(settings, ready_pods, tick.panic),
        metrics=((settings.metric, tick.stable),),
    )


@dataclass(frozen=True)
class _Tick:
    """The numbers of one tick (Knative's names: dspc / dppc are the desired stable / panic pod counts)."""

    stable: float
    panic: float
    pods: int  # ready pods, at least 1
    max_up: int
    max_down: int
    dspc: int
    dppc: int
    stable_pods: int  # dspc within the rates
    panic_pods: int  # dppc within the rates


def _measured(settings: KpaSettings, state: KpaState, now: float, ready_pods: int, reachable: bool) -> _Tick:
    stable = window_average(state.window, now, settings.stable_window) or 0.0
    panic = window_average(state.window, now, settings.panic_window) or 0.0
    pods = max(1, ready_pods)
    max_up = math.ceil(settings.max_scale_up_rate * pods)
    max_down = math.floor(pods / settings.max_scale_down_rate) if reachable else 0
    dspc, dppc = _ceil(stable / settings.target_value), _ceil(panic / settings.target_value)
    return _Tick(
        stable, panic, pods, max_up, max_down, dspc, dppc,
        stable_pods=_with_activation(settings, dspc, _clamp(dspc, max_down, max_up)),
        panic_pods=_with_activation(settings, dppc, _clamp(dppc, max_down, max_up)),
    )


def _by_mode(settings: KpaSettings, state: KpaState, now: float, tick: _Tick) -> tuple[KpaState, int, list[str]]:
    """Panic or stable mode: the desired count before the delay and the bounds, and why."""
    over_threshold = tick.dppc / tick.pods >= settings.panic_threshold_percentage / 100
    was_panicking = state.panicking
    state = _panic_updated(settings, state, now, over_threshold)
    target = f"target {settings.target_value:g} per pod"
    stable = f"{settings.metric} {tick.stable:.1f} over {settings.stable_window} s"
    if not state.panicking:
        ended = "panic over; " if was_panicking else ""
        clauses = [f"{ended}stable: {stable} / {target} = {tick.dspc} pods"]
        clauses += _rate_limit_clauses(settings, tick.dspc, tick.stable_pods, tick)
        desired, tolerated = _scale_down_tolerated(settings, state, tick)
        return state, desired, clauses + tolerated
    # In panic, provision for the larger of the two windows and never go below the panic's maximum.
    desired = max(tick.stable_pods, tick.panic_pods)
    held = max(state.max_panic_pods, desired)
    state = replace(state, max_panic_pods=held)
    began = "entered" if not was_panicking else f"for {now - state.panic_started_at:.0f} s"
    clauses = [f"panic ({began}): {settings.metric} {tick.panic:.1f} over {settings.panic_window} s needs "
               f"{tick.dppc} pods, {100 * tick.dppc / tick.pods:.0f} % of {tick.pods} ready "
               f"({'≥' if over_threshold else '<'} panic threshold {settings.panic_threshold_percentage:g} %); "
               f"stable {stable} / {target} is {tick.dspc}"]
    clauses += _rate_limit_clauses(settings, max(tick.dspc, tick.dppc), desired, tick)
    if held > desired:
        clauses.append(f"no scale-down in panic: keeping {held}")
    return state, held, clauses


def _prepared(settings: KpaSettings, state: KpaState, now: float) -> KpaState:
    """Trims old samples and starts the clocks of a state built without kpa_new_state."""
    window = window_trim(window_start(state.window, now), now, settings.stable_window)
    active = now if state.last_active_at is None else state.last_active_at
    return replace(state, window=window, last_active_at=active)


def _panic_updated(settings: KpaSettings, state: KpaState, now: float, over_threshold: bool) -> KpaState:
    if over_threshold:
        started = now if state.panic_started_at is None else state.panic_started_at
        return replace(state, panic_started_at=started, last_over_threshold_at=now)
    if state.panicking and state.last_over_threshold_at + settings.stable_window < now:
        # The burst has been in the stable average for a full window: the stable value can be trusted again.
        return replace(state, panic_started_at=None, last_over_threshold_at=None, max_panic_pods=0)
    return state


def _scale_down_tolerated(settings: KpaSettings, state: KpaState, tick: _Tick) -> tuple[int, list[str]]:
    """Below the last decision only when the fewer pods would run at most (1 − tolerance) × target."""
    desired, previous, stable = tick.stable_pods, state.last_desired, tick.stable
    if not settings.scale_down_tolerance or previous is None or desired >= previous:
        return desired, []
    roomy = _ceil(stable / (settings.target_value * (1 - settings.scale_down_tolerance)))
    roomy = _clamp(roomy, tick.max_down, tick.max_up)
    held = max(desired, min(previous, roomy))
    if held == desired:
        return desired, []
    fewer = held - 1
    load = f"{100 * stable / (fewer * settings.target_value):.0f} %" if fewer else "more than 100 %"
    return held, [f"scale-down held at {held}: {fewer} pods would run at {load} of target, above "
                  f"{100 - 100 * settings.scale_down_tolerance:g} % (scale-down tolerance)"]


def _with_activation(settings: KpaSettings, wanted: int, pods: int) -> int:
    """activation-scale is the fewest pods of a version that needs any (so the first burst is served)."""
    return max(pods, settings.activation_scale) if wanted > 0 else pods


def _rate_limit_clauses(settings: KpaSettings, wanted: int, limited: int, tick: _Tick) -> list[str]:
    if wanted > limited and limited == tick.max_up:
        return [f"limited to {tick.max_up} by max-scale-up-rate {settings.max_scale_up_rate:g}"]
    if wanted < limited and limited == tick.max_down:
        return [f"limited to {tick.max_down} by max-scale-down-rate {settings.max_scale_down_rate:g}"]
    return []


def _delayed(settings: KpaSettings, state: KpaState, now: float, desired: int) -> tuple[KpaState, int, list[str]]:
    """Scale-down delay: the highest value desired within the last scale_down_delay seconds wins."""
    if settings.scale_down_delay <= 0:
        return state, desired, []
    recent = tuple(entry for entry in state.recent_desired if entry[0] > now - settings.scale_down_delay)
    recent += ((now, desired),)
    highest = max(value for _, value in recent)
    state = replace(state, recent_desired=recent)
    if highest > desired:
        return state, highest, [f"scale-down delayed: {highest} is the highest in the last "
                                f"{settings.scale_down_delay} s"]
    return state, desired, []


def _bounds_floor(settings: KpaSettings, state: KpaState) -> int:
    if state.scale_target_initialized:
        return settings.min_scale
    return max(settings.min_scale, settings.initial_scale)


def _bounded(settings: KpaSettings, state: KpaState, ready_pods: int, desired: int) -> tuple[KpaState, int, list[str]]:
    """min-scale, max-scale, and initial-scale until the version has once had that many ready pods."""
    if not state.scale_target_initialized and ready_pods >= _bounds_floor(settings, state):
        state = replace(state, scale_target_initialized=True)
    floor = _bounds_floor(settings, state)
    if desired < floor:
        if floor > settings.min_scale:
            return state, floor, [f"raised to initial-scale {floor} until it is first reached"]
        return state, floor, [f"raised to min-scale {floor}"]
    if settings.max_scale and desired > settings.max_scale:
        return state, settings.max_scale, [f"capped at max-scale {settings.max_scale}"]
    return state, desired, []


def _scale_to_zero(
    settings: KpaSettings, state: KpaState, now: float, ready_pods: int, desired: int, activator_in_path: bool
) -> tuple[int, list[str]]:
    """Zero only after the version was idle for the grace period, and only with the activator in the path:
    without it, the first request after zero would find no one to hold it. Within the grace period a version
    without ready pods (woken from zero, or still starting) keeps the pods it is starting."""
    if desired > 0:
        return desired, []
    idle = now - state.last_active_at
    needed = max(settings.scale_to_zero_grace, settings.scale_to_zero_pod_retention)
    if idle < needed:
        keep = 1 if ready_pods else settings.activation_scale
        starting = "" if ready_pods else " (starting)"
        return keep, [f"idle {idle:.0f} s < {needed} s before scaling to zero: keeping {keep} pod{starting}"]
    if ready_pods == 0:
        return 0, ["already at zero"]
    if not activator_in_path:
        return 1, ["the activator is not in the request path: keeping 1 pod"]
    return 0, [f"idle {idle:.0f} s ≥ {needed} s: scaling to zero"]


def _excess_burst_capacity(settings: KpaSettings, ready_pods: int, panic: float) -> int:
    """EBC = floor(ready × per-pod capacity − target burst capacity − panic average); negative keeps the
    activator in the path to buffer the burst."""
    if settings.target_burst_capacity == 0:
        return 0
    if settings.target_burst_capacity < 0:
        return -1
    return math.floor(ready_pods * settings.total_value - settings.target_burst_capacity - panic)


def _clamp(value: int, low: int, high: int) -> int:
    return min(max(value, low), high)


def _ceil(value: float) -> int:
    """ceil that ignores float noise: 7 × 70 / 70 must give 7, not 8."""
    return math.ceil(round(value, 9))
