"""Synthetic load traces and a driver that plays them through a scaler like the 2-second decision loop does.

A trace is a function of the second (t = 0, 1, 2, ...) returning the version's total load at that second:
concurrency for the KPA, requests per second for the EAS scaler.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from autoscaler import (
    Decision,
    EasScalerSettings,
    KpaSettings,
    eas_decide,
    eas_new_state,
    eas_observe,
    kpa_decide,
    kpa_new_state,
    kpa_observe,
)

Trace = Callable[[int], float]
TICK = 2


def step(before: float, after: float, at: int) -> Trace:
    return lambda t: before if t < at else after


def burst(base: float, peak: float, start: int, length: int) -> Trace:
    return lambda t: peak if start <= t < start + length else base


def ramp(start_value: float, end_value: float, duration: int) -> Trace:
    return lambda t: start_value + (end_value - start_value) * min(t, duration) / duration


def idle() -> Trace:
    return lambda t: 0.0


def diurnal(low: float, high: float, period: int) -> Trace:
    """A day compressed into `period` seconds: trough at t = 0, peak at period / 2."""
    return lambda t: low + (high - low) * (1 - math.cos(2 * math.pi * t / period)) / 2


def noisy(mean: float, relative_sd: float, seconds: int, seed: int) -> Trace:
    """Gaussian noise around `mean`, reproducible through `seed`, never below zero."""
    rng = random.Random(seed)
    values = [max(0.0, rng.gauss(mean, mean * relative_sd)) for _ in range(seconds)]
    return lambda t: values[t]


@dataclass(frozen=True)
class Tick:
    time: int
    desired: int
    panicking: bool
    ready: int
    decision: Decision


def drive_kpa(settings: KpaSettings, trace: Trace, seconds: int, *, ready: int = 1, state=None,
              start: int = 0, follow: bool = True, **decide_options) -> tuple[list[Tick], object]:
    """Feeds trace(t) every second and decides every 2 s (after observing that second).

    follow: ready pods become the last decision at the next tick (pods start within 2 s); otherwise ready
    stays fixed, which isolates the algorithm from its own feedback.
    """
    state = state if state is not None else kpa_new_state(start)
    ticks = []
    for t in range(start, start + seconds):
        state = kpa_observe(state, t, trace(t))
        if t % TICK == 0:
            state, decision = kpa_decide(settings, state, now=t, ready_pods=ready, **decide_options)
            ticks.append(Tick(t, decision.desired, decision.panicking, ready, decision))
            if follow:
                ready = decision.desired
    return ticks, state


def drive_eas(settings: EasScalerSettings, qps: Trace, seconds: int, *, replicas: int = 1, state=None,
              start: int = 0, gauges: Callable[[int, int], dict] | None = None) -> tuple[list[Tick], object]:
    """Like drive_kpa for the EAS scaler; replicas follow each decision. gauges(t, replicas) may add
    per-second samples such as {"cpu": 63.0}."""
    state = state if state is not None else eas_new_state(start)
    ticks = []
    for t in range(start, start + seconds):
        sample = {"qps": qps(t), **(gauges(t, replicas) if gauges else {})}
        state = eas_observe(state, t, sample)
        if t % TICK == 0:
            state, decision = eas_decide(settings, state, now=t, current_replicas=replicas)
            ticks.append(Tick(t, decision.desired, False, replicas, decision))
            replicas = decision.desired
    return ticks, state


def changes(ticks: list[Tick]) -> int:
    """How many times the desired count changed from one tick to the next."""
    return sum(1 for before, after in zip(ticks, ticks[1:]) if before.desired != after.desired)


def at(ticks: list[Tick], time: int) -> Tick:
    return next(tick for tick in ticks if tick.time == time)
