"""Server-side dynamic batching (EAS `metadata.rpc.batching`) for the built-in processors.

Requests for the model that arrive within `max_batch_timeout` of the first waiting one (or until
`max_batch_size` rows wait) are stacked along the batch axis into ONE call of the model, and the answer is
cut back into each request's rows. Each request keeps its own response shape: the model formats every
request's slice exactly as it formats an unbatched answer (V1 `predictions`, V2 outputs, EAS bodies alike).

Only requests that agree on what the model is fed can share a call: the model's `batch_part` names that
as a key (V2 input name, dtype, the shape after the batch axis). A request with another key waits in its
own batch; one the model cannot batch at all (a DataFrame of named columns, a 1-D body) runs alone, as
without batching. A body that cannot be read fails alone before it joins. When a batched call fails, each
of its requests is run again alone, so the request at fault gets its own error and the others their answers.

Batches are gathered on the event loop (no lock: one thread decides) and run in the model's thread pool,
so several batches may run at once, up to `rpc.worker_threads`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Histogram

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# One observation per model call: its count is the number of model calls, its sum the requests (or rows).
BATCH_REQUESTS = Histogram("ferry_batch_size", "Requests served by one batched model call", ["model"],
                           buckets=_SIZE_BUCKETS)
BATCH_ROWS = Histogram("ferry_batch_rows", "Rows (instances) fed to one batched model call", ["model"],
                       buckets=_SIZE_BUCKETS)


@dataclass(frozen=True)
class BatchPart:
    """One request, ready to join a batch: its decoded payload, what it may be batched with, its rows."""

    payload: object
    key: Hashable
    inputs: np.ndarray  # batch axis first

    @property
    def rows(self) -> int:
        return int(self.inputs.shape[0])


@dataclass
class _Waiting:
    parts: list[BatchPart] = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None


def flush_before_adding(waiting_rows: int, incoming_rows: int, max_batch_size: int) -> bool:
    """Whether the waiting batch must go before a request of `incoming_rows` joins, so a call never
    exceeds max_batch_size rows (a request larger than that alone still runs, as a batch of its own)."""
    return waiting_rows > 0 and waiting_rows + incoming_rows > max_batch_size


def split_rows(output, counts: list[int]) -> list | None:
    """`output` (an array, or a list of arrays: one per model output) cut along the batch axis into
    `counts` rows each; None when an output does not have one row per input row (it cannot be split)."""
    total = sum(counts)
    arrays = output if isinstance(output, list) else [output]
    if not all(isinstance(array, np.ndarray) and array.ndim >= 1 and array.shape[0] == total for array in arrays):
        return None
    bounds = np.cumsum(counts)[:-1]
    pieces = [np.split(array, bounds) for array in arrays]
    return [list(each) if isinstance(output, list) else each[0] for each in zip(*pieces)]


class Batcher:
    """Gathers one model's requests into batched calls. The model provides `batch_part(payload)` ->
    BatchPart | None, `run_batch(inputs)` -> output, `batch_answer(payload, output)` and `predict_now`."""

    def __init__(self, model, *, max_batch_size: int, max_batch_timeout_ms: float, executor: Executor):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, not {max_batch_size}")
        if max_batch_timeout_ms < 0:
            raise ValueError(f"max_batch_timeout must be >= 0 ms, not {max_batch_timeout_ms}")
        self.model = model
        self.max_batch_size = max_batch_size
        self.timeout = max_batch_timeout_ms / 1000
        self.executor = executor
        self.waiting: dict[Hashable, _Waiting] = {}
        self.requests_histogram = BATCH_REQUESTS.labels(model=model.name)
        self.rows_histogram = BATCH_ROWS.labels(model=model.name)

    async def predict(self, payload):
        loop = asyncio.get_running_loop()
        part = self.model.batch_part(payload)  # a bad body raises here: it fails alone
        if part is None:
            return await loop.run_in_executor(self.executor, self.model.predict_now, payload)
        waiting = self.waiting.get(part.key)
        if waiting is not None and flush_before_adding(waiting.rows, part.rows, self.max_batch_size):
            self._flush(part.key)
            waiting = None
        if waiting is None:
            waiting = self.waiting[part.key] = _Waiting()
            waiting.timer = loop.call_later(self.timeout, self._flush, part.key)
        future = loop.create_future()
        waiting.parts.append(part)
        waiting.futures.append(future)
        waiting.rows += part.rows
        if waiting.rows >= self.max_batch_size:
            self._flush(part.key)
        return await future

    def _flush(self, key) -> None:
        waiting = self.waiting.pop(key, None)
        if waiting is None:  # the timer of a batch that filled up first
            return
        waiting.timer.cancel()
        asyncio.get_running_loop().create_task(self._run(waiting))

    async def _run(self, waiting: _Waiting) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(self.executor, self._run_now, waiting.parts)
        except BaseException as error:  # the pool refused the work (shutting down): every request learns it
            outcomes = [error] * len(waiting.parts)
        for future, outcome in zip(waiting.futures, outcomes):
            if future.done():  # the client left and its request was cancelled
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _run_now(self, parts: list[BatchPart]) -> list:
        """Each part's answer or exception, in order; in a worker thread."""
        counts = [part.rows for part in parts]
        try:
            output = self.model.run_batch(np.concatenate([part.inputs for part in parts]))
            pieces = split_rows(output, counts)
        except Exception:  # which request is at fault is found below, by running each alone
            pieces = None
        if pieces is None:
            return [self._alone(part) for part in parts]
        self.requests_histogram.observe(len(parts))
        self.rows_histogram.observe(sum(counts))
        answers = []
        for part, piece in zip(parts, pieces):
            try:
                answers.append(self.model.batch_answer(part.payload, piece))
            except Exception as error:
                answers.append(error)
        return answers

    def _alone(self, part: BatchPart):
        self.requests_histogram.observe(1)
        self.rows_histogram.observe(part.rows)
        try:
            return self.model.predict_now(part.payload)
        except Exception as error:
            return error
