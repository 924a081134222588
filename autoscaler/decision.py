"""What a scaler decided at one tick, and why. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """One tick's outcome.

    desired: instances the version should have now (final: bounds and scale-to-zero applied).
    reason: a sentence with the numbers behind `desired`, meant for events and `describe` output.
    panicking: the KPA is in panic mode (always False for the EAS scaler).
    stable_average / panic_average: the KPA's observed metric over its two windows (total for the version).
    excess_burst_capacity: the KPA's EBC; negative means the activator should stay in the request path.
    recommendations: the EAS scaler's per-metric recommendation, as (metric, instances) pairs.
    metrics: the values this decision was made from, as (metric, value) pairs: per strategy for the EAS scaler,
        in its threshold's units (qps and queue[backlog] per instance, cpu and gpu[util] in %); the stable
        average of the KPA's metric (the version's total). A metric not measured yet is left out.
    """

    desired: int
    reason: str
    panicking: bool = False
    stable_average: float | None = None
    panic_average: float | None = None
    excess_burst_capacity: int | None = None
    recommendations: tuple[tuple[str, int], ...] = ()
    metrics: tuple[tuple[str, float], ...] = ()

    @property
    def activator_needed(self) -> bool:
        """Knative keeps the activator in the path while the burst capacity is short (EBC < 0)."""
        return self.excess_burst_capacity is not None and self.excess_burst_capacity < 0
