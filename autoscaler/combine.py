"""How the metric scaler and the cron scaler combine into one instance count. Pure.

The cron TargetSize is a floor: the metric scaler may go above it when the load needs more, never below it.
`min` and `max` bound the metric scaler. A scheduled TargetSize above `max` still wins: it is an explicit
instruction for that time (EAS likewise lifts the autoscaler's range to the scheduled size), while `max` guards
against the metric scaler running away. A TargetSize below `min` changes nothing: `min` is a floor as well.
"""

from __future__ import annotations


def combine(
    *, metric_desired: int | None, cron_floor: int | None, min_scale: int, max_scale: int | None
) -> tuple[int, str]:
    """The instance count to apply and a sentence saying which rule decided it.

    metric_desired: the metric scaler's decision (KPA or EAS), None without one (a cron scaler on a service
        with a fixed count passes that count instead). cron_floor: from cron_floor(), None when no job
        applies; 0 is no floor. max_scale: None or 0 means unbounded.
    """
    bounded, reason = _within_bounds(metric_desired, min_scale, max_scale)
    if cron_floor is None or cron_floor <= bounded:
        if cron_floor:
            reason += f" (above the cron floor {cron_floor})"
        return bounded, reason
    if max_scale and cron_floor > max_scale:
        return cron_floor, f"cron TargetSize {cron_floor} (above max {max_scale}: the schedule wins)"
    return cron_floor, f"cron floor {cron_floor} over {reason}"


def _within_bounds(metric_desired: int | None, min_scale: int, max_scale: int | None) -> tuple[int, str]:
    if metric_desired is None:
        return min_scale, f"min {min_scale} (no metric decision)"
    if metric_desired < min_scale:
        return min_scale, f"min {min_scale} (metric scaler wants {metric_desired})"
    if max_scale and metric_desired > max_scale:
        return max_scale, f"max {max_scale} (metric scaler wants {metric_desired})"
    return metric_desired, f"metric scaler {metric_desired}"
