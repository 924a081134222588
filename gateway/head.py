"""A request's headers, read once: by `Gateway.precheck` when they are complete (before the body), and handed
with the body to `Gateway.prepare` (gateway/app.py), so neither scans them again."""

from __future__ import annotations


class Head:
    """What a request's headers say. `parsed`: the path as paths.parse reads it (None: a local endpoint, or
    `bad_path` says why it is refused); `route`: the route a plain or Bearer token was accepted for (None when
    signed: an EAS signature covers the body, so only `prepare` can check it); `chunked`: the body comes
    chunked; `stream_body`: `precheck` lets it be forwarded as it arrives (gateway/stream.py)."""

    __slots__ = ("parsed", "bad_path", "authorization", "content_type", "date", "content_md5", "model", "pinned",
                 "length", "route", "chunked", "stream_body")


def read_head(headers) -> Head:
    head = Head()
    head.authorization = head.content_type = head.date = head.content_md5 = head.model = head.pinned = None
    head.length = head.parsed = head.bad_path = head.route = None
    head.chunked = head.stream_body = False
    for name, value in headers:
        if name == b"authorization":
            head.authorization = value
        elif name == b"content-type":
            head.content_type = value
        elif name == b"content-length":
            head.length = value
        elif name == b"date":
            head.date = value
        elif name == b"content-md5":
            head.content_md5 = value
        elif name == b"model":
            head.model = value.decode("latin-1")
        elif name == b"ferry-version":
            head.pinned = value
        elif name == b"transfer-encoding":
            head.chunked = value.rstrip().lower().endswith(b"chunked")
    return head
