"""Per-second metric buckets and their averages over a trailing window. Pure.

Both the KPA and the EAS scaler are fed one sample per second (the gateway's counters) and read averages over
the last N seconds at each decision. A window is an immutable value: adding a sample returns a new window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SecondWindow:
    """Samples bucketed by whole second, oldest first.

    `started` is the first second the window knows about (its first sample, or when the scaler started). It
    keeps a young window from being averaged over seconds that were never observed, as Knative does: ten
    seconds after a start, a 60 s average is taken over those ten seconds, not diluted by fifty empty ones.
    """

    buckets: tuple[tuple[int, float], ...] = ()
    started: int | None = None


def window_add(window: SecondWindow, second: float, value: float) -> SecondWindow:
    """Adds `value` to the bucket of `second`; several samples in one second add up (several reporters)."""
    at = math.floor(second)
    started = at if window.started is None else min(window.started, at)
    buckets = list(window.buckets)
    if buckets and buckets[-1][0] == at:
        buckets[-1] = (at, buckets[-1][1] + value)
    elif not buckets or buckets[-1][0] < at:
        buckets.append((at, value))
    else:  # A late sample: rare, so a plain re-sort is fine.
        merged = dict(buckets)
        merged[at] = merged.get(at, 0.0) + value
        buckets = sorted(merged.items())
    return SecondWindow(tuple(buckets), started)


def window_start(window: SecondWindow, second: float) -> SecondWindow:
    """Marks `second` as the start of observation if nothing was observed yet."""
    if window.started is not None:
        return window
    return SecondWindow(window.buckets, math.floor(second))


def window_trim(window: SecondWindow, now: float, keep_seconds: int) -> SecondWindow:
    """Drops buckets older than the last `keep_seconds` seconds up to `now`."""
    oldest = math.floor(now) - keep_seconds
    kept = tuple(bucket for bucket in window.buckets if bucket[0] > oldest)
    return window if len(kept) == len(window.buckets) else SecondWindow(kept, window.started)


def window_average(window: SecondWindow, now: float, seconds: int, *, missing_is_zero: bool = True) -> float | None:
    """Average over the seconds (now - seconds, now]; None when the window has seen nothing yet.

    With `missing_is_zero` (request counts, concurrency) a second without a sample counted nothing, so it
    weighs as 0. Without it (gauges such as CPU %) a missing second is unknown, and the average is over the
    samples only.
    """
    if window.started is None:
        return None
    last = math.floor(now)
    first = last - seconds + 1
    values = [value for at, value in window.buckets if first <= at <= last]
    if not missing_is_zero:
        return sum(values) / len(values) if values else None
    observed_seconds = min(seconds, last - window.started + 1)
    if observed_seconds <= 0:
        return None
    return sum(values) / observed_seconds
