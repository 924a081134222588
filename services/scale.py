"""How many instances a service should have right now, and how many a wake-up from zero starts. Pure.

Whether a wake-up failed is the activation record's (services/activations.py)."""


def effective_instance_count(*, instance_count: int, autoscaler: dict | None, autoscaled: int | None,
                             cron_scaler: dict | None = None) -> int:
    """A fixed count (raised to a cron scaler's floor), or, with an autoscaler, its last decision kept within
    [min, max].

    Before the autoscaler has decided anything, a service starts with its fixed count clamped into the range
    (Knative's initial scale), so a new autoscaled service comes up instead of waiting at zero. A cron
    TargetSize above `max` lifts the range to it (docs/autoscaling.md: the schedule wins); only the autoscaler
    loop decides such a count, and only while that job is in effect.
    """
    if autoscaler is None:
        # Only a cron scaler decides for a fixed-size service, and it sets a floor.
        return max(instance_count, autoscaled or 0)
    low = int(autoscaler.get("min", 1))
    high = max(int(autoscaler.get("max", max(low, instance_count))), cron_ceiling(cron_scaler))
    wanted = instance_count if autoscaled is None else autoscaled
    return max(low, min(high, wanted))


def cron_ceiling(cron_scaler: dict | None) -> int:
    """The largest TargetSize of a cron scaler's jobs (0 without any)."""
    return max((int(job["TargetSize"]) for job in (cron_scaler or {}).get("ScaleJobs") or ()), default=0)


def scale_write(*, current: int, desired: int, effective_if_written: int) -> str:
    """What the autoscaler loop does with a decision: "none" (already in effect), "write" (store it; the
    reconciler acts on it) or "unapplied" (storing it would not change the count: writing it again every tick
    would only repeat the same event and reconcile, so it is recorded once instead)."""
    if desired == current:
        return "none"
    if effective_if_written != desired:
        return "unapplied"
    return "write"


def activation_count(autoscaler: dict | None) -> int:
    """Instances to start when a request arrives for a service at zero (EAS onZero.scaleUpActivationReplicas)."""
    on_zero = ((autoscaler or {}).get("behavior") or {}).get("onZero") or {}
    return max(1, int(on_zero.get("scaleUpActivationReplicas") or 1))


def service_instance_count(service, *, autoscaled: int | None = None) -> int:
    """effective_instance_count of a Service row (every reader of "how many instances now" goes through here,
    so the console, the reconciler, the renderer and the activator agree). `autoscaled` overrides the row's
    last decision, for the loop weighing a new one."""
    return effective_instance_count(
        instance_count=service.instance_count, autoscaler=service.autoscaler, cron_scaler=service.cron_scaler,
        autoscaled=service.autoscaled_instances if autoscaled is None else autoscaled)
