"""The autoscaler loop (`manage.py runautoscaler`): every 2 s, for each service with an autoscaler or a cron
scaler, feed the gateway's last seconds of metrics to the pure scalers (autoscaler), combine with the
cron floor, and when the count changes write it, record why, and ask the reconciler to act.

It holds each service's scaler state in memory; a restarted loop starts KPA services in panic when they have
more than one ready instance (no accidental scale-down after a restart).
"""

import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from django import db
from django.db.models import Count, Q

import autoscaler as scalers
from contracts.engine_load import ENGINE_LOAD_TTL
from contracts.scaling_records import cron_jobs_read, cron_jobs_write, decision_write
from services.activations import activation_failed
from services.models import Phase, Service
from services.scale import service_instance_count, scale_write
from services.selectors.quotas import quota_instance_cap
from services.servicefile.asynchronous import is_async
from services.servicefile.mesh import is_pool
from services.writes import event_record

from .engine_samples import EngineSampler
from .mesh.load import pool_seconds
from .mesh.signals import ask_for_placement_passes
from .metrics import read_engine_loads, read_queue_backlog, read_seconds
from .scaling_failures import scaling_failed, scaling_recovered

__all__ = ["TICK_SECONDS", "AutoscalerLoop"]
logger = logging.getLogger("ferry.autoscaler")
TICK_SECONDS = 2.0


@dataclass
class Tracked:
    """What the loop remembers about one service between ticks."""

    kind: str  # "kpa" | "eas" | "cron"
    config: str  # the autoscaler section it was built from: rebuilt when it changes
    state: object = None
    observed_until: int = 0
    cpu_processes: dict = field(default_factory=dict)
    last_desired: int | None = None  # this loop's previous decision: a count raised from 0 since was an activation
    unapplied: int | None = None  # a decision that could not take effect, already reported once
    waiting_at: int = 0  # the last second an engine queue reading was fed (a gauge: one sample a second)


class AutoscalerLoop:
    def __init__(self, redis_client):
        self.redis = redis_client
        self.tracked: dict[int, Tracked] = {}
        self.engines = EngineSampler(redis_client)  # LLM engines' token rates for the console's charts

    def tick(self, now: float | None = None) -> list[str]:
        """One pass over every scaled service; returns the changes it made, as sentences."""
        now = time.time() if now is None else now
        changes = []
        services = list(_scaled_services())
        for service in services:
            try:
                change = self._decide(service, now)
            except (db.OperationalError, db.InterfaceError):
                raise  # the database is away: every service's tick fails alike; runautoscaler reports it once
            except Exception as exc:  # noqa: BLE001 -- one service's broken scaling must not stop the others'
                scaling_failed(service, exc, now)
                continue
            scaling_recovered(service, now)
            if change:
                changes.append(change)
        for gone in set(self.tracked) - {service.pk for service in services}:
            del self.tracked[gone]
        ask_for_placement_passes()
        try:
            self.engines.sample(now)
        except (db.OperationalError, db.InterfaceError):
            raise
        except Exception:  # noqa: BLE001 -- charts must never stop the scaling
            logger.exception("Could not sample the LLM engines' counters")
        return changes

    def _decide(self, service: Service, now: float) -> str | None:
        if activation_failed(service.activation, service.generation):
            # Held at zero until the user changes the service (deployer/activation.py).
            self._record_cron_jobs(service, now, applied=False,
                                   outcome="the service is held at zero after a failed wake-up; change it to retry")
            return None
        tracked = self._tracked(service, now)
        current = _count(service)
        if tracked.last_desired == 0 and current > 0:
            tracked.state = _activated(tracked, now)
        self._observe(service, tracked, now)
        metric_desired, decision = self._metric_decision(service, tracked, now, current)
        floor, cron_reason = scalers.cron_floor(service.cron_scaler, datetime.fromtimestamp(now, UTC))
        scaler = service.autoscaler or {}
        desired, why = scalers.combine(metric_desired=metric_desired, cron_floor=floor,
                                       min_scale=int(scaler.get("min", 0)), max_scale=scaler.get("max"))
        reason = decision.reason if decision and desired == metric_desired else f"{why}; {cron_reason}"
        if desired == 0 < current and _first_start(service):
            # As Knative holds a new revision at its initial scale until it is ready: a new service's instances
            # (an engine may load for minutes) are not sent to zero before they ever answered. A service woken
            # from zero is kept by its held requests instead, which count as demand (gateway busy_ms_sum).
            desired, reason = current, f"{reason}; held at {current} until an instance is ready (still starting)"
        cap = quota_instance_cap(service)
        if cap is not None and desired > cap:
            desired, reason = cap, f"{reason}; held at {cap} by project {service.project.name}'s quota"
        self._record(service, now, current, desired, reason, decision)
        change, applied, outcome = self._act(service, tracked, current, desired, reason)
        self._record_cron_jobs(service, now, applied=applied, outcome=outcome)
        return change

    def _act(self, service: Service, tracked: Tracked, current: int, desired: int,
             reason: str) -> tuple[str | None, bool, str]:
        """Applies a decision; returns the change made (a sentence or None), whether the decision is in effect,
        and what happened, for the cron jobs' records."""
        action = scale_write(current=current, desired=desired,
                             effective_if_written=_count(service, autoscaled=desired))
        # What the loop takes as in effect: an unapplied decision is not (else a count above it looks like a
        # wake-up by the activator); a write the activator overtook is (its raise from there is one).
        tracked.last_desired = current if action == "unapplied" else desired
        if action == "none":
            tracked.unapplied = None
            return None, True, f"{current} instance(s), as decided"
        if action == "unapplied":
            _report_unapplied(service, tracked, current, desired, reason)
            return None, False, f"decided {desired} instance(s) but the service's range keeps {current}"
        tracked.unapplied = None
        change = _apply(service, current, desired, reason)
        if change is None:
            return None, False, "the activator changed the count meanwhile; deciding again at the next tick"
        return change, True, f"instances {current} -> {desired}"

    def _record_cron_jobs(self, service: Service, now: float, *, applied: bool, outcome: str) -> None:
        if not service.cron_scaler:
            return
        previous = cron_jobs_read(self.redis, service.cluster.name, service.name)
        states = scalers.cron_job_states(service.cron_scaler, datetime.fromtimestamp(now, UTC), applied=applied,
                                         outcome=outcome, previous=previous)
        cron_jobs_write(self.redis, service.cluster.name, service.name, states)

    def _tracked(self, service: Service, now: float) -> Tracked:
        config = json.dumps(service.autoscaler, sort_keys=True)
        tracked = self.tracked.get(service.pk)
        if tracked is None or tracked.config != config:
            current = _count(service)
            tracked = Tracked(kind=_kind(service), config=config, state=_new_state(service, now, current),
                              observed_until=int(now) - 60, last_desired=current)
            self.tracked[service.pk] = tracked
        return tracked

    def _observe(self, service: Service, tracked: Tracked, now: float) -> None:
        """Feeds every complete second since the last tick (the current second is still being counted)."""
        if tracked.kind == "cron":
            return
        seconds = list(range(tracked.observed_until + 1, int(now)))
        if not seconds:
            return
        if is_pool(service.spec):  # a model mesh pool scales on the traffic of all its models
            samples = pool_seconds(self.redis, service, seconds)
        else:
            versions = list(service.versions.values_list("number", flat=True))
            samples = read_seconds(self.redis, service.cluster.name, service.name, versions, seconds)
        for second in seconds:
            sample = samples[second]
            if tracked.kind == "kpa":
                value = sample.requests if _kpa_settings(service).metric == "rps" else sample.concurrency
                tracked.state = scalers.kpa_observe(tracked.state, second, value)
            else:
                tracked.state = scalers.eas_observe(tracked.state, second, {"qps": sample.requests,
                                                                            "concurrency": sample.in_flight})
        tracked.observed_until = seconds[-1]

    def _metric_decision(self, service: Service, tracked: Tracked, now: float, current: int):
        if tracked.kind == "cron":
            return service.instance_count, None
        ready = service.ready_count
        if tracked.kind == "kpa":
            tracked.state, decision = scalers.kpa_decide(_kpa_settings(service), tracked.state, now=now,
                                                         ready_pods=ready)
        else:
            settings = scalers.EasScalerSettings.from_autoscaler(service.autoscaler)
            extra = {"cpu": _cpu_percent(service, tracked)} if _uses(service, "cpu") else {}
            if is_async(service.spec):
                # Read now, not averaged: entries waiting at zero wake the service (autoscaler/eas.py ACTIVITY),
                # and a backlog keeps it from zero however few requests finish.
                extra[scalers.BACKLOG_METRIC] = read_queue_backlog(self.redis, service.cluster.name, service.name)
            note = self._observe_waiting(service, tracked, now) if _uses(service, scalers.WAITING_METRIC) else ""
            tracked.state, decision = scalers.eas_decide(settings, tracked.state, now=now, current_replicas=current,
                                                         metrics=extra)
            if note:
                decision = replace(decision, reason=f"{decision.reason}; {note}")
        return decision.desired, decision

    def _observe_waiting(self, service: Service, tracked: Tracked, now: float) -> str:
        """Feeds the engines' waiting queue (ready instances, fresh readings) as this second's `llm[waiting]`
        sample; returns what was left out, for the decision's reason."""
        ready = service.instances.filter(ready=True).values_list("name", flat=True)
        reading = scalers.waiting_total(read_engine_loads(self.redis, service.cluster.name, service.name), ready,
                                        now=now, ttl=ENGINE_LOAD_TTL)
        if reading.total is not None and int(now) > tracked.waiting_at:
            tracked.state = scalers.eas_observe(tracked.state, int(now), {scalers.WAITING_METRIC: reading.total})
            tracked.waiting_at = int(now)
        return reading.note

    def _record(self, service, now, current, desired, reason, decision) -> None:
        """The latest decision and its inputs, for DescribeServiceAutoScaler and the console's charts."""
        record = {"time": now, "current": current, "desired": desired, "reason": reason,
                  "panicking": bool(decision and decision.panicking),
                  "stable": decision.stable_average if decision else None,
                  "panic": decision.panic_average if decision else None,
                  "metrics": [{"metricName": name, "value": value} for name, value in decision.metrics]
                  if decision else []}
        decision_write(self.redis, service.cluster.name, service.name, record)


def _count(service: Service, *, autoscaled: int | None = None) -> int:
    """The instances the service has now, or would have with `autoscaled` as the loop's decision."""
    return service_instance_count(service, autoscaled=autoscaled)


def _first_start(service: Service) -> bool:
    """The service has never been Running (it is being created) and its instances are starting, none ready."""
    return service.phase in (Phase.CREATING, Phase.WAITING) and service.ready_count == 0 and \
        service.instances.exists()


def _report_unapplied(service: Service, tracked: Tracked, current: int, desired: int, reason: str) -> None:
    """Once per decision: a decision the service's range cannot take would otherwise be written, and an event
    recorded, at every tick."""
    if tracked.unapplied == desired:
        return
    tracked.unapplied = desired
    event_record(service=service, reason="ScaleNotApplied", warning=True,
                 message=f"Decided {desired} instance(s) for {service.name}, which keeps {current}: {reason}")


def _scaled_services():
    # On Kubernetes the HPA or Knative scales (the rendered manifests carry the policy): only local services here.
    return (Service.objects.filter(Q(autoscaler__isnull=False) | Q(cron_scaler__isnull=False),
                                   desired_state="running", deletion_requested_at__isnull=True,
                                   cluster__kind="local")
            .select_related("project", "cluster")
            .annotate(ready_count=Count("instances", filter=Q(instances__ready=True))))


def _kind(service: Service) -> str:
    if not service.autoscaler:
        return "cron"
    return "kpa" if "kpa" in service.autoscaler else "eas"


def _kpa_settings(service: Service) -> scalers.KpaSettings:
    from dataclasses import replace

    settings = scalers.kpa_settings_from_annotations({k: str(v) for k, v in service.autoscaler["kpa"].items()})
    return replace(settings, min_scale=int(service.autoscaler.get("min", 0)),
                   max_scale=int(service.autoscaler.get("max", 0)))


def _new_state(service: Service, now: float, current: int):
    kind = _kind(service)
    if kind == "kpa":
        return scalers.kpa_restart_state(service.ready_count, now, at_zero=current == 0)
    if kind == "eas":
        return scalers.eas_new_state(now)
    return None


def _activated(tracked: Tracked, now: float):
    """The activator raised the service from zero since the last tick."""
    if tracked.kind == "kpa":
        return scalers.kpa_activated(tracked.state, now)
    if tracked.kind == "eas":
        return scalers.eas_activated(tracked.state, now)
    return tracked.state


def _uses(service: Service, metric: str) -> bool:
    return any(s.get("metricName") == metric for s in (service.autoscaler or {}).get("scaleStrategies", []))


def _cpu_percent(service: Service, tracked: Tracked) -> float:
    """Average CPU % of the service's local instance processes since the last tick."""
    import psutil

    readings = []
    for pid in service.local_instances.filter(ready=True, pid__isnull=False).values_list("pid", flat=True):
        process = tracked.cpu_processes.get(pid)
        try:
            if process is None:
                process = tracked.cpu_processes[pid] = psutil.Process(pid)
                process.cpu_percent(None)  # the first call only starts the measurement
                continue
            readings.append(process.cpu_percent(None))
        except psutil.Error:
            tracked.cpu_processes.pop(pid, None)
    return sum(readings) / len(readings) if readings else 0.0


def _apply(service: Service, current: int, desired: int, reason: str) -> str | None:
    from .tasks import reconcile_service

    # Compare and set: the activator may have woken the service since it was read; its count wins this tick.
    changed = (Service.objects.filter(pk=service.pk, autoscaled_instances=service.autoscaled_instances)
               .update(autoscaled_instances=desired))
    if not changed:
        return None
    message = f"Scaled {service.name} {current} -> {desired}: {reason}"
    event_record(service=service, reason="Scaled", message=message)
    reconcile_service.delay(service.pk)
    return message
