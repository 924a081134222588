"""Which instance of an LLM service takes a request: by the engine's own load, with prefix affinity. Pure: no
I/O, no clock; the balancer (balancer.py) hands it the instances that may take the request now.

Why not least-outstanding: an LLM request's cost is unknown upfront (prompt and output lengths vary a hundredfold),
and the engine already knows how loaded it is: requests waiting in its queue and how full its KV cache is
(scraped from its /metrics by engines.py). And an engine keeps the KV cache of prompts it has seen (vLLM's
automatic prefix caching): a request whose prompt starts like an earlier one skips recomputing that prefix, but
only on the instance that saw it. So, as llm-d and the Gateway API Inference Extension do:

1. Load: an instance's queue is the engine's waiting requests at the last scrape plus the requests the gateway
   sent it since then (net of those that finished: a scrape is up to a period old, and between scrapes only the
   gateway's own count is fresh). Least loaded: the shortest queue, then the emptier KV cache (in bands of
   `KV_BAND`, so that noise in the cache's use does not send every request to one instance), then the fewest
   outstanding requests.
2. Affinity: the request's prompt prefix (`prefix_key`: the system prompt, else the start of the messages or
   prompt) is mapped to an instance by rendezvous (highest-random-weight) hashing over the candidates: each
   prefix has a preferred instance, prefixes spread evenly, and removing an instance moves only its prefixes.
3. The bound: the preferred instance keeps the request while its queue is within `QUEUE_SLACK` of the least
   loaded one's, its KV cache is below `KV_CACHE_LIMIT`, and it would not hold more requests in flight than
   `LOAD_FACTOR` times the mean (consistent hashing with bounded loads, as KubeAI's prefix hashing does; never
   less than the least loaded one's plus `QUEUE_SLACK`, so that a light load keeps its affinity). Else the least
   loaded takes it: a hot prefix spills over rather than queueing behind itself. The in-flight bound matters
   where an engine never queues (a CPU engine runs every request in its batch, each slower for it).

A request without a prompt (GET /v1/models, a body that is not JSON) has the empty key: the least loaded.
"""

from __future__ import annotations

import hashlib
import json

PREFIX_CHARS = 256  # characters of the prompt that make the affinity key
QUEUE_SLACK = 2  # requests the preferred instance's queue may exceed the least loaded one's by
KV_CACHE_LIMIT = 0.9  # a preferred instance whose KV cache is this full (0..1) gives the request up
KV_BAND = 0.1  # KV-cache use is compared in bands this wide
LOAD_FACTOR = 1.25  # the preferred instance may hold this many times the mean of requests in flight
_NO_PROMPT = b""


def prefix_key(body) -> bytes:
    """The affinity key of an OpenAI request body (chat completions, completions, embeddings): a digest of the
    first `PREFIX_CHARS` characters of its system prompt (the leading system or developer messages), else of its
    messages' text, else of its `prompt` / `input`. b"" when it has none (then no affinity)."""
    if not isinstance(body, (bytes, bytearray)) or not body or body[:1] != b"{":
        return _NO_PROMPT
    try:
        document = json.loads(body)
    except ValueError:
        return _NO_PROMPT
    if not isinstance(document, dict):
        return _NO_PROMPT
    text = _prompt_prefix(document)
    if not text:
        return _NO_PROMPT
    return hashlib.blake2b(text[:PREFIX_CHARS].encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _prompt_prefix(document: dict) -> str:
    messages = document.get("messages")
    if isinstance(messages, list) and messages:
        system = []
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("system", "developer"):
                break
            system.append(_content(message.get("content")))
        # The system prompt alone when there is one: requests that share it share a key whatever the user asks.
        parts = system or [_content(m.get("content")) for m in messages if isinstance(m, dict)]
        return _join_until(parts)
    for field in ("prompt", "input"):
        prompt = document.get(field)
        if isinstance(prompt, list) and prompt:
            prompt = prompt[0]  # a batch: the first prompt's prefix
        if isinstance(prompt, list):  # token ids
            return " ".join(str(token) for token in prompt[:PREFIX_CHARS])
        if isinstance(prompt, str):
            return prompt
    return ""


def _content(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # parts: [{"type": "text", "text": ...}, ...]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict)
                       and isinstance(part.get("text"), str))
    return ""


def _join_until(parts: list[str]) -> str:
    text, size = [], 0
    for part in parts:
        text.append(part)
        size += len(part)
        if size >= PREFIX_CHARS:
            break
    return "\n".join(text)


def queue(instance) -> float:
    """The engine's waiting requests at the last scrape plus those the gateway sent since (never negative)."""
    load = instance.load
    added = instance.outstanding - instance.scraped_outstanding
    return (load.waiting if load is not None else 0.0) + (added if added > 0 else 0)


def kv_cache(instance) -> float:
    load = instance.load
    return load.kv_cache if load is not None else 0.0


def rank(instance) -> tuple:
    """Less is less loaded: queue, then KV-cache band, then outstanding requests."""
    return queue(instance), int(kv_cache(instance) / KV_BAND), instance.outstanding


def least_loaded(candidates, start: int = 0):
    """The least loaded of `candidates` (a non-empty sequence); among equals the first from `start` on, so that
    idle instances take turns."""
    count = len(candidates)
    best = candidates[start % count]
    best_rank = rank(best)
    for offset in range(1, count):
        candidate = candidates[(start + offset) % count]
        candidate_rank = rank(candidate)
        if candidate_rank < best_rank:
            best, best_rank = candidate, candidate_rank
    return best


def preferred(candidates, key: bytes):
    """The instance `key` maps to by rendezvous hashing: the highest hash of (key, instance name)."""
    best, best_weight = None, b""
    for candidate in candidates:
        weight = hashlib.blake2b(candidate.name.encode(), key=key, digest_size=8).digest()
        if best is None or weight > best_weight:
            best, best_weight = candidate, weight
    return best


def within_bound(chosen, least, candidates) -> bool:
    """Whether the preferred instance may keep a request although `least` is less loaded."""
    if queue(chosen) > queue(least) + QUEUE_SLACK or kv_cache(chosen) >= KV_CACHE_LIMIT:
        return False
    in_flight = sum(candidate.outstanding for candidate in candidates) + 1  # with this request
    allowed = max(LOAD_FACTOR * in_flight / len(candidates), least.outstanding + QUEUE_SLACK)
    return chosen.outstanding + 1 <= allowed


def choose(candidates, key: bytes, start: int = 0):
    """The instance of `candidates` (those that may take the request now, non-empty) that gets it."""
    least = least_loaded(candidates, start)
    if not key or len(candidates) == 1:
        return least
    chosen = preferred(candidates, key)
    return chosen if chosen is least or within_bound(chosen, least, candidates) else least
