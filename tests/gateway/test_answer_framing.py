"""The pure framing decisions of the gateway's upstream client (gateway/upstream.py): when an instance's body
ends at the connection's close, which answers are streamed, which Content-Length the gateway writes; and which
request bodies are forwarded as they arrive (gateway/stream.py)."""

from types import SimpleNamespace

from gateway.head import read_head
from gateway.stream import streams_body
from gateway.upstream import close_delimited, content_length, response_headers, streamed

JSON = (b"content-type", b"application/json")


def test_a_body_without_length_or_chunking_ends_when_the_instance_closes():
    assert close_delimited([JSON])
    assert close_delimited([JSON, (b"transfer-encoding", b"gzip")])  # not chunked last: read until close
    assert not close_delimited([JSON, (b"content-length", b"0")])
    assert not close_delimited([(b"transfer-encoding", b"gzip, Chunked ")])


def test_the_gateway_writes_a_content_length_only_where_http_allows_one():
    assert content_length("POST", 200, [JSON], 17) == 17
    assert content_length("GET", 404, [], 0) == 0
    for status in (100, 103, 204, 304):
        assert content_length("GET", status, [JSON], 0) is None, status
    # HEAD: the instance's own Content-Length (that of a GET) goes through; without one, the body's.
    assert content_length("HEAD", 200, [JSON, (b"content-length", b"12345")], 0) is None
    assert content_length("HEAD", 401, [JSON], 58) == 58


def test_only_answers_to_head_and_304_keep_the_instances_content_length():
    headers = [JSON, (b"content-length", b"9"), (b"connection", b"close"), (b"etag", b'"v1"')]
    assert response_headers(headers) == [JSON, (b"etag", b'"v1"')]
    assert response_headers(headers, keep_length=True) == [JSON, (b"content-length", b"9"), (b"etag", b'"v1"')]


def test_answers_without_a_declared_length_and_event_streams_are_streamed():
    assert streamed(200, [JSON, (b"transfer-encoding", b"chunked")])
    assert streamed(200, [JSON])  # ends at the close
    assert streamed(200, [(b"content-type", b"Text/Event-Stream; charset=utf-8"), (b"content-length", b"10")])
    assert not streamed(200, [JSON, (b"content-length", b"17")])  # the fast path: collected, then written whole
    for status in (101, 204, 304):
        assert not streamed(status, [JSON]), status


def test_only_chunked_bodies_nothing_needs_whole_are_forwarded_as_they_arrive():
    route = SimpleNamespace(mirror_targets=())
    chunked = [(b"transfer-encoding", b"chunked")]

    def head(headers, accepted=route):
        found = read_head(headers)
        found.route = accepted
        return found

    assert streams_body(head(chunked))
    assert not streams_body(head([(b"content-length", b"12")]))
    assert not streams_body(head(chunked, accepted=None))  # a signature (it covers the body), the OpenAI API
    assert not streams_body(head(chunked, accepted=SimpleNamespace(mirror_targets=("copy",))))  # copies need it
