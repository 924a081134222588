"""An LLM engine's own load, as its Prometheus endpoint reports it, and where Ferry keeps it.

vLLM and SGLang expose how busy they are on `/metrics`: requests running and waiting in the engine's queue,
KV-cache use, prefix-cache hits, tokens generated, time to first token and per output token. The gateway
scrapes each LLM instance it routes to (gateway/engines.py) and routes by this load (LLM-aware routing); it
writes what it read to Redis, where the autoscaler loop (scaling on the waiting queue) and the console
(monitoring) read it:

- `ferry:engine:<cluster>:<service>`: a hash, field = instance name, value = `EngineLoad.to_json()`; the gateway
  rewrites it every scrape and lets it expire (`ENGINE_LOAD_TTL`) when it stops.

`parse_metrics` is pure: Prometheus text exposition in, `EngineLoad` out. Counters (tokens, prefix-cache hits,
histogram sums and counts) are totals since the engine started: a reader takes rates from two readings.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

ENGINE_PREFIX = "ferry:engine"
ENGINE_LOAD_TTL = 30  # seconds: a hash not rewritten for this long is a gateway that stopped scraping

# Each field, from the first of its names the engine exposes (vLLM's, then SGLang's). vLLM has renamed some
# over releases (gpu_cache_usage_perc -> kv_cache_usage_perc): both are read.
_NAMES = {
    "running": ("vllm:num_requests_running", "sglang:num_running_reqs"),
    "waiting": ("vllm:num_requests_waiting", "sglang:num_queue_reqs"),
    "kv_cache": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"),
    "prefix_queries": ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries",
                       "vllm:gpu_prefix_cache_queries_total"),
    "prefix_hits": ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits_total"),
    "prompt_tokens": ("vllm:prompt_tokens_total", "sglang:prompt_tokens_total"),
    "generation_tokens": ("vllm:generation_tokens_total", "sglang:generation_tokens_total"),
    "ttft_sum": ("vllm:time_to_first_token_seconds_sum", "sglang:time_to_first_token_seconds_sum"),
    "ttft_count": ("vllm:time_to_first_token_seconds_count", "sglang:time_to_first_token_seconds_count"),
    "tpot_sum": ("vllm:inter_token_latency_seconds_sum", "vllm:time_per_output_token_seconds_sum",
                 "sglang:inter_token_latency_seconds_sum", "sglang:time_per_output_token_seconds_sum"),
    "tpot_count": ("vllm:inter_token_latency_seconds_count", "vllm:time_per_output_token_seconds_count",
                   "sglang:inter_token_latency_seconds_count", "sglang:time_per_output_token_seconds_count"),
}


@dataclass(frozen=True)
class EngineLoad:
    running: float = 0.0
    waiting: float = 0.0
    kv_cache: float = 0.0  # 0..1
    prefix_queries: float = 0.0  # tokens looked up in the prefix cache (total)
    prefix_hits: float = 0.0  # of those, found (total)
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    ttft_sum: float = 0.0
    ttft_count: float = 0.0
    tpot_sum: float = 0.0
    tpot_count: float = 0.0
    at: float = 0.0  # Unix time of the scrape

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> EngineLoad:
        data = json.loads(text)
        known = {field.name for field in fields(cls)}
        return cls(**{key: float(value) for key, value in data.items() if key in known})


def engine_load_key(cluster: str, service: str) -> str:
    return f"{ENGINE_PREFIX}:{cluster}:{service}"


def parse_metrics(text: str, at: float = 0.0) -> EngineLoad:
    """The engine's load from its `/metrics` text. A metric with labels (vLLM labels each by model_name and
    engine) is summed over its series; a metric the engine does not expose reads 0."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, value = _sample(line)
        if name is not None:
            totals[name] = totals.get(name, 0.0) + value
    values = {}
    for field_name, names in _NAMES.items():
        values[field_name] = next((totals[name] for name in names if name in totals), 0.0)
    return EngineLoad(**values, at=at)


def _sample(line: str) -> tuple[str | None, float]:
    """(metric name, value) of one sample line; (None, 0) for one that does not parse or is not finite."""
    brace = line.find("{")
    if brace >= 0:
        name, rest = line[:brace], line[line.rfind("}") + 1:]
    else:
        name, _, rest = line.partition(" ")
    parts = rest.split()
    if not parts:
        return None, 0.0
    try:
        value = float(parts[0])
    except ValueError:
        return None, 0.0
    return (name.strip(), value) if math.isfinite(value) else (None, 0.0)
