"""When a failed exchange with an instance may be tried again elsewhere, and for how long an instance that
refused a connection is left out of the balancing (its ejection). Pure functions: no I/O, no clock reads.

The rule is Go's net/http transport's (`shouldRetryRequest`), which a proxy in front of POST-only inference
must follow too:

- Nothing was sent (connecting failed: refused, reset, timed out): always retried. The instance cannot have
  seen the request.
- The connection closed or was reset after the request was written and before any byte of an answer
  (`UpstreamClosed`): the instance may or may not have run it. Retried only when repeating it is harmless:
  GET, HEAD, OPTIONS or TRACE, or a request carrying `Idempotency-Key` / `X-Idempotency-Key` (the client
  says a repeat is safe). An EAS prediction is a POST without such a header, so it is answered 502: a model
  that appends to a store, charges a quota or samples must not run twice behind the client's back.
- Anything after an answer began, a timeout, or an unreadable answer: never retried.

Go retries an `UpstreamClosed` request only on a reused connection ("a fresh connection has no reason to be
closed"); here a fresh one is retried too, because a killed instance closes fresh connections as well and
the methods retried are safe to repeat by definition.

Ejection (Envoy's outlier detection, reduced to two signals): a refused connection means the instance's
process is gone or not listening, and a connection closed before the answer to a request written on it
means the process died (or is dying) under it, so the instance is skipped for `ejection_seconds` while the
control plane has not yet taken it out of the routing table (a crash is seen by the node agent, then the
reconcile, then the table: about 0.5 s). A dying process's listening socket still completes connections for
tens of milliseconds (they wait in its backlog, then are reset): without the ejection, the requests its
clients send again at once after their 502s go there and fail too (measured: 2 more than the 4 in flight,
bench/faults/run.py). A keep-alive race (an idle connection the instance closed as a request was written)
would eject a healthy instance for a second; the pool makes it rare: a connection idle longer than
`max_idle` (2 s, under uvicorn's 5 s keep-alive) is not reused, and one the instance closed is seen before
reuse (upstream.py `Connection.stale`).
"""

from __future__ import annotations

from .upstream import UpstreamClosed, UpstreamConnectError

REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
IDEMPOTENCY_HEADERS = frozenset({b"idempotency-key", b"x-idempotency-key"})
EJECTION_FIRST = 1.0  # seconds; doubled for each refusal in a row, up to EJECTION_MAX
EJECTION_MAX = 30.0
MAX_TRIES = 8  # safety net; the activator's deadline is what bounds a retried request's wait


def may_retry(failure: Exception, method: str, headers, replayable: bool = True) -> bool:
    """Whether the request may be sent again (to another instance, or to this one once it is back).
    `replayable` False: its body was streamed and some of it may have gone out (gateway/stream.py)."""
    if isinstance(failure, UpstreamConnectError):
        return True
    if not replayable:
        return False
    if isinstance(failure, UpstreamClosed):
        return method in REPLAYABLE_METHODS or any(name in IDEMPOTENCY_HEADERS for name, _ in headers)
    return False


def ejects(failure: Exception) -> bool:
    """Whether this failure takes the instance out of the balancing for a while: it refused a connection, or
    closed one before answering the request written on it (its process died, or is dying)."""
    return isinstance(failure, (UpstreamConnectError, UpstreamClosed))


def ejection_seconds(refusals_in_a_row: int) -> float:
    """How long an instance stays out after its `refusals_in_a_row`-th refusal (1, 2, ...): a restarted
    instance listed at the same address is tried again soon, one that stays down is tried less often."""
    return min(EJECTION_FIRST * 2 ** max(refusals_in_a_row - 1, 0), EJECTION_MAX)
