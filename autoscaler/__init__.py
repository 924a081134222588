"""Autoscaling decisions as pure functions: Knative's KPA, the EAS metric scaler, the EAS cron scaler.

No Django, no I/O, no clock: every time is an argument. A decision loop keeps one state per service version,
feeds it per-second samples (`kpa_observe` / `eas_observe`), calls `kpa_decide` / `eas_decide` every 2 s and
merges the result with `cron_floor` through `combine`. See docs/autoscaling.md.
"""

from .combine import combine
from .cron import cron_floor
from .cron_status import cron_job_states
from .decision import Decision
from .eas import (BACKLOG_METRIC, EasScalerSettings, EasState, ScaleStrategy, eas_activated, eas_decide,
                  eas_new_state, eas_observe)
from .knative import kpa_annotations, kpa_settings_from_annotations, parse_duration
from .kpa import (KpaSettings, KpaState, kpa_activated, kpa_decide, kpa_new_state, kpa_observe,
                  kpa_restart_state)
from .llm import WAITING_METRIC, WaitingReading, waiting_total

__all__ = [
    "BACKLOG_METRIC",
    "Decision",
    "EasScalerSettings",
    "EasState",
    "KpaSettings",
    "KpaState",
    "ScaleStrategy",
    "WAITING_METRIC",
    "WaitingReading",
    "combine",
    "cron_floor",
    "cron_job_states",
    "eas_activated",
    "eas_decide",
    "eas_new_state",
    "eas_observe",
    "kpa_activated",
    "kpa_annotations",
    "kpa_decide",
    "kpa_new_state",
    "kpa_observe",
    "kpa_restart_state",
    "kpa_settings_from_annotations",
    "parse_duration",
    "waiting_total",
]
