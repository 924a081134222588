"""Which failed exchanges the gateway tries again and how long a refusing instance is left out
(gateway/retry.py), pure: nothing sent is always retried; a connection closed after the request was written
and before any answer only for requests that are safe to repeat (Go's net/http rule); nothing else."""

from gateway.retry import EJECTION_MAX, ejection_seconds, ejects, may_retry
from gateway.upstream import UpstreamClosed, UpstreamConnectError, UpstreamError, UpstreamTimeout

REFUSED = UpstreamConnectError("cannot connect to 127.0.0.1:1: [Errno 111] Connection refused")
CLOSED = UpstreamClosed("the instance closed the connection before answering")


def test_a_request_never_sent_is_retried_whatever_its_method():
    for method in ("POST", "PUT", "PATCH", "DELETE", "GET"):
        assert may_retry(REFUSED, method, [])


def test_a_request_written_then_cut_off_is_retried_only_when_repeating_it_is_harmless():
    assert not may_retry(CLOSED, "POST", [(b"content-type", b"application/json")])  # an EAS prediction
    assert not may_retry(CLOSED, "PUT", [])
    for method in ("GET", "HEAD", "OPTIONS", "TRACE"):
        assert may_retry(CLOSED, method, [])
    assert may_retry(CLOSED, "POST", [(b"idempotency-key", b"7f1c")])
    assert may_retry(CLOSED, "POST", [(b"x-idempotency-key", b"7f1c")])


def test_failures_after_an_answer_began_and_timeouts_are_never_retried():
    for failure in (UpstreamError("the instance closed the connection"), UpstreamTimeout("late")):
        assert not may_retry(failure, "GET", [(b"idempotency-key", b"1")])


def test_a_refused_connection_or_one_closed_before_the_answer_ejects_the_instance():
    assert ejects(REFUSED)
    assert ejects(CLOSED)  # the process died under the request (the pool keeps keep-alive races out)
    assert not ejects(UpstreamTimeout("late"))  # a slow instance is alive
    assert not ejects(UpstreamError("the instance closed the connection"))  # after an answer began


def test_ejections_grow_with_refusals_in_a_row_up_to_a_cap():
    assert [ejection_seconds(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert ejection_seconds(50) == EJECTION_MAX


def test_a_streamed_request_body_is_never_sent_twice():
    # Some of it may have reached the instance, and it was not kept: only a request never sent is retried.
    assert may_retry(REFUSED, "POST", [], replayable=False)
    assert not may_retry(CLOSED, "GET", [], replayable=False)
    assert not may_retry(CLOSED, "POST", [(b"idempotency-key", b"7f1c")], replayable=False)
