"""LLM engines' token counters turned into per-second and per-minute figures the console charts.

The gateway's scraper keeps only each LLM instance's latest reading (`ferry:engine:<cluster>:<service>`,
contracts/engine_load.py): counters since the engine started (tokens generated, histogram sums and counts of
time to first token and per output token). Rates need two readings, and a chart needs them over time, so the
autoscaler loop, which already wakes every 2 s and reads these hashes to scale, also samples them here: for
each running LLM service, the difference between an instance's reading and the previous one it saw is added
to the gateway's metrics hashes of that instance's version, at the second (and minute) of the newer reading,
in fields of their own:

    engine_generation_tokens, engine_prompt_tokens,
    engine_tpot_ms_sum, engine_tpot_count, engine_ttft_ms_sum, engine_ttft_count

Added with HINCRBYFLOAT, as the gateway adds its own fields, so the console reads them like any other
(services/console/metrics.py): tokens per second is engine_generation_tokens over the step, time per output
token engine_tpot_ms_sum / engine_tpot_count. The previous readings live in the loop's memory: after a restart
the first reading of each instance is only a baseline. A counter that went down is an engine that restarted:
its reading becomes the new baseline. A reading older than the time-to-live is not used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from contracts.engine_load import ENGINE_LOAD_TTL, EngineLoad
from contracts.keys import metrics_minute_key, metrics_second_key
from processors.codes import LLM_PROCESSORS

from .metrics import read_engine_loads

logger = logging.getLogger("ferry.autoscaler")
SECOND_TTL = 3600  # as the gateway keeps its hashes (gateway/metrics.py)
MINUTE_TTL = 30 * 86400
COUNTERS = ("generation_tokens", "prompt_tokens", "tpot_sum", "tpot_count", "ttft_sum", "ttft_count")
# Stored name and factor: sums are seconds in the engine, milliseconds in Ferry's hashes.
FIELDS = {"generation_tokens": ("engine_generation_tokens", 1.0), "prompt_tokens": ("engine_prompt_tokens", 1.0),
          "tpot_sum": ("engine_tpot_ms_sum", 1000.0), "tpot_count": ("engine_tpot_count", 1.0),
          "ttft_sum": ("engine_ttft_ms_sum", 1000.0), "ttft_count": ("engine_ttft_count", 1.0)}


@dataclass(frozen=True)
class Delta:
    """What one instance's engine did between two readings, in the hashes' units, dated by the newer one."""

    second: int
    fields: dict[str, float]


def engine_delta(previous: EngineLoad | None, current: EngineLoad, *, now: float, ttl: float = ENGINE_LOAD_TTL
                 ) -> Delta | None:
    """None when there is nothing to add: no previous reading, the same reading again, a stale one, or an engine
    that restarted (a counter went down). Pure."""
    if previous is None or current.at <= previous.at or now - current.at > ttl:
        return None
    changes = {name: getattr(current, name) - getattr(previous, name) for name in COUNTERS}
    if any(change < 0 for change in changes.values()):
        return None
    fields = {FIELDS[name][0]: change * FIELDS[name][1] for name, change in changes.items() if change > 0}
    return Delta(int(current.at), fields) if fields else None


class EngineSampler:
    """Keeps each instance's last reading between the loop's ticks."""

    def __init__(self, redis_client):
        self.redis = redis_client
        self.previous: dict[tuple[str, str, str], EngineLoad] = {}

    def sample(self, now: float) -> int:
        """Adds every running LLM service's engine deltas to the metrics hashes; returns how many were added."""
        from services.models import Instance

        seen, added = set(), 0
        pipe = self.redis.pipeline(transaction=False)
        for cluster, service, service_pk in _llm_services():
            versions = dict(Instance.objects.filter(service_id=service_pk).values_list("name", "version__number"))
            for instance, load in read_engine_loads(self.redis, cluster, service).items():
                key = (cluster, service, instance)
                seen.add(key)
                delta = engine_delta(self.previous.get(key), load, now=now)
                if load.at >= getattr(self.previous.get(key), "at", 0.0):
                    self.previous[key] = load
                if delta is None or instance not in versions:
                    continue
                _add(pipe, cluster, service, versions[instance], delta)
                added += 1
        if added:
            pipe.execute()
        for gone in set(self.previous) - seen:
            del self.previous[gone]
        return added


def _add(pipe, cluster: str, service: str, version: int, delta: Delta) -> None:
    for key, ttl in ((metrics_second_key(cluster, service, version, delta.second), SECOND_TTL),
                     (metrics_minute_key(cluster, service, version, delta.second), MINUTE_TTL)):
        for name, value in delta.fields.items():
            pipe.hincrbyfloat(key, name, value)
        pipe.expire(key, ttl)


def _llm_services():
    from services.models import Service

    return (Service.objects.filter(desired_state="running", deletion_requested_at__isnull=True,
                                   spec__processor__in=sorted(LLM_PROCESSORS))
            .values_list("cluster__name", "name", "pk"))
