"""Every write of the domain. Views, tasks, the console and the CLI's API all call these."""

from .benchmarks import (
    benchmark_create,
    benchmark_delete,
    benchmark_start,
    benchmark_stop,
    benchmark_update,
)
from .catalog import (
    service_create,
    service_delete,
    service_instances_restart,
    service_restart,
    service_start,
    service_stop,
    service_update,
)
from .cloning import service_clone
from .clusters import cluster_delete, cluster_register, cluster_update
from .credentials import access_key_create, access_key_revoke, api_token_create, api_token_revoke
from .events import event_record
from .labels import service_label_delete, service_label_update
from .locks import service_safety_lock_update
from .rollouts import (
    rollout_finish,
    rollout_pause,
    rollout_promote,
    rollout_resume,
    rollout_rollback,
    rollout_set_canary_weight,
    rollout_switch,
)
from .scaling import autoscaler_delete, autoscaler_set, cron_scaler_delete, cron_scaler_set, service_scale
from .traffic import canary_set, mirror_delete, mirror_set, service_release, version_rollback, version_weights_set

__all__ = [
    "access_key_create",
    "access_key_revoke",
    "api_token_create",
    "api_token_revoke",
    "autoscaler_delete",
    "autoscaler_set",
    "benchmark_create",
    "benchmark_delete",
    "benchmark_start",
    "benchmark_stop",
    "benchmark_update",
    "canary_set",
    "cluster_delete",
    "cluster_register",
    "cluster_update",
    "cron_scaler_delete",
    "cron_scaler_set",
    "event_record",
    "mirror_delete",
    "mirror_set",
    "rollout_finish",
    "rollout_pause",
    "rollout_promote",
    "rollout_resume",
    "rollout_rollback",
    "rollout_set_canary_weight",
    "rollout_switch",
    "service_clone",
    "service_create",
    "service_delete",
    "service_instances_restart",
    "service_label_delete",
    "service_label_update",
    "service_release",
    "service_restart",
    "service_safety_lock_update",
    "service_scale",
    "service_start",
    "service_stop",
    "service_update",
    "version_rollback",
    "version_weights_set",
]
