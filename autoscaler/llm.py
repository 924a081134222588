"""The LLM engine's waiting queue as the EAS scaler's `llm[waiting]` sample. Pure: readings and the clock in.

An LLM engine (vLLM, SGLang) batches what it can run and queues the rest: requests waiting in its queue are
the clearest sign that a service needs another instance (KServe and the vLLM production stack scale on
`vllm:num_requests_waiting` through KEDA for the same reason; CPU says little for an engine). The gateway's
scraper keeps each instance's reading in Redis (contracts/engine_load.py); the loop hands them here.

Only ready instances count (a starting engine's queue is not traffic the service has), and only readings
younger than the time-to-live: an older one is an engine or a scraper that stopped reporting, whose last
queue may be long gone. What was left out is said in the note, which the loop adds to the decision's reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from contracts.engine_load import EngineLoad

WAITING_METRIC = "llm[waiting]"


@dataclass(frozen=True)
class WaitingReading:
    """total: requests waiting over the fresh readings of ready instances; None when there is none to count.
    note: what was not counted and why ('' when every ready instance had a fresh reading)."""

    total: float | None
    note: str = ""


def waiting_total(loads: Mapping[str, EngineLoad], ready: Iterable[str], *, now: float, ttl: float
                  ) -> WaitingReading:
    """Sum of `waiting` over the ready instances whose reading is at most `ttl` seconds old."""
    total, counted, stale, missing = 0.0, 0, [], []
    for name in sorted(set(ready)):
        load = loads.get(name)
        if load is None:
            missing.append(name)
        elif now - load.at > ttl:
            stale.append(f"{name}'s is {now - load.at:.0f} s old")
        else:
            total += load.waiting
            counted += 1
    notes = []
    if stale:
        notes.append(f"ignored stale engine readings (older than {ttl:g} s): {', '.join(stale)}")
    if missing:
        notes.append(f"no engine reading yet for {', '.join(missing)}")
    note = "; ".join(notes)
    if not counted:
        return WaitingReading(None, f"{WAITING_METRIC}: not measured ({note or 'no ready instance'})")
    return WaitingReading(total, f"{WAITING_METRIC}: {note}" if note else "")
