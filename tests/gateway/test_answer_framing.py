"""The pure framing decisions of the gateway's upstream client (gateway/upstream.py): when an instance's body
ends at the connection's close, and which Content-Length the gateway writes."""

from gateway.upstream import close_delimited, content_length, response_headers

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
