"""A minimal pooled HTTP/1.1 client for talking to instances: asyncio protocols + httptools' response parser.

Why not aiohttp: per request it builds a ClientResponse, a StreamReader, timers and context managers; measured
with bench/gateway/upstream_clients.py (same POST, keep-alive, 4 concurrent, client CPU only) it used
87-110 µs per request against 14-19 µs for this client. A small client is enough, and its callback form
(`Connection.send`) lets the gateway answer without a coroutine.

What it guarantees:
- `UpstreamConnectError` means nothing was sent: the caller may retry the request on another instance.
- `UpstreamClosed`: the request was written, then the connection closed or was reset before any byte of an
  answer; only a request that is safe to repeat may be retried (gateway/retry.py says which).
- Any other failure after the request was written is `UpstreamError` (or `UpstreamTimeout`): never retried,
  because a POST to a model may not be idempotent.
- A pooled connection is reused only while it is open and has been idle less than `max_idle` seconds, so the
  instance's own keep-alive timeout (uvicorn: 5 s) never closes one under us.
- Every valid HTTP/1.x answer is relayed, not only Content-Length and chunked ones: a body that ends when the
  instance closes the connection (HTTP/1.0 servers such as Python's http.server), answers to HEAD (headers
  only, whatever their Content-Length says), 204 and 304; interim 1xx answers are skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import httptools

# Hop-by-hop headers (RFC 9110 7.6.1) and those the client sets itself: never copied between hops.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    b"host", b"content-length", b"expect", b"proxy-authorization", b"proxy-authenticate",
})
# For HEAD and 304 the instance's Content-Length describes the body a GET would get: relayed as it is.
HOP_BY_HOP_BUT_LENGTH = HOP_BY_HOP - {b"content-length"}


class UpstreamError(Exception):
    """The exchange failed after the request was (possibly) sent."""


class UpstreamConnectError(UpstreamError):
    """Connecting failed: nothing was sent, so another instance may be tried."""


class UpstreamClosed(UpstreamError):
    """The connection ended before any byte of the answer: the instance may or may not have run the request."""


class UpstreamTimeout(UpstreamError):
    pass


class Connection(asyncio.Protocol):
    """One keep-alive connection. `send(head, body, timeout, done)` writes one request and later calls
    `done(status, headers, body, error)` from the callback that read the answer (no future, no task: the hot
    path stays synchronous); `exchange()` is the same for coroutines."""

    __slots__ = ("pool", "transport", "parser", "done", "headers", "body", "closed", "idle_since", "timer",
                 "headers_done", "bodiless", "answered")

    def __init__(self, pool: Pool):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done = None
        self.headers: list = []
        self.body: list = []
        self.closed = False
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.headers_done = False
        self.bodiless = False
        self.answered = False  # a byte of the answer arrived: from then a failure is never retried

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamError(f"unreadable response: {error}"))

    def connection_lost(self, exc) -> None:
        self.closed = True
        if exc is None and self.done is not None and self.headers_done and close_delimited(self.headers):
            # Neither Content-Length nor chunked: the body is everything until the instance closed (RFC 9112 6.3).
            return self._complete(self.parser.get_status_code(), False)
        why = "the instance closed the connection" + (f": {exc}" if exc else "")
        self._fail(UpstreamError(why) if self.answered else UpstreamClosed(why + " before answering"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        if self.bodiless and self.done is not None and self.parser.get_status_code() >= 200:
            # An answer to HEAD has no body whatever its headers say; the parser, which cannot be told the
            # request was HEAD, would wait for one: answer now and drop the connection.
            self._complete(self.parser.get_status_code(), False)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.done is None:
            return
        parser = self.parser
        status = parser.get_status_code()
        if status < 200:  # an interim answer (103 Early Hints): the final one follows on this connection
            self.headers, self.body, self.headers_done = [], [], False
            return
        self._complete(status, parser.should_keep_alive())

    def _complete(self, status: int, keep_alive: bool) -> None:
        done, self.done = self.done, None
        body = self.body
        try:
            done(status, self.headers, body[0] if len(body) == 1 else b"".join(body), None)
        finally:  # after the answer went on: nothing here delays it
            self.timer.cancel()
            if keep_alive:
                self.pool.release(self)
            else:
                self.close()

    def _fail(self, error: Exception) -> None:
        done, self.done = self.done, None
        if done is not None:
            self.timer.cancel()
            self.close()
            done(0, None, None, error)

    def _timed_out(self) -> None:
        self._fail(UpstreamTimeout("the instance did not answer in time"))

    def send(self, head: bytes, body: bytes, timeout: float, done, bodiless: bool = False) -> None:
        """`bodiless`: the request is HEAD, so the answer has no body."""
        self.done = done
        self.headers = []
        self.body = []
        self.headers_done = False
        self.bodiless = bodiless
        self.answered = False
        # One write: head and body leave in one segment when they fit (TCP_NODELAY is on).
        if len(body) < 65536:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
        # A timer handle is far cheaper than asyncio.wait_for (which wraps the wait in a task).
        self.timer = self.pool.loop.call_later(timeout, self._timed_out)

    async def exchange(self, head: bytes, body: bytes, timeout: float, bodiless: bool = False):
        """(status, headers, body), or raises UpstreamError."""
        answer = self.pool.loop.create_future()

        def done(status, headers, content, error):
            if not answer.done():
                if error is not None:
                    answer.set_exception(error)
                else:
                    answer.set_result((status, headers, content))

        self.send(head, body, timeout, done, bodiless)
        return await answer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Idle connections to one instance (LIFO: the most recently used one is the warmest)."""

    __slots__ = ("loop", "host", "port", "idle", "max_idle_count", "max_idle_age", "connect_timeout", "open")

    def __init__(self, host: str, port: int, *, max_idle_count: int = 64, max_idle_age: float = 2.0,
                 connect_timeout: float = 2.0):
        self.loop = asyncio.get_running_loop()
        self.host = host
        self.port = port
        self.idle: deque[Connection] = deque()
        self.max_idle_count = max_idle_count
        self.max_idle_age = max_idle_age
        self.connect_timeout = connect_timeout
        self.open = True

    def take(self) -> Connection | None:
        """An idle connection that is safe to reuse, or None (then `connect()`): no coroutine on the hot path."""
        idle = self.idle
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.closed or connection.transport.is_closing():
                continue
            if now - connection.idle_since > self.max_idle_age:
                connection.close()
                continue
            return connection
        return None

    async def connect(self) -> Connection:
        # A timer that cancels the attempt rather than asyncio.wait_for, which needs to run inside a Task on
        # Python >= 3.12 (the gateway's server drives requests without one).
        attempt = self.loop.create_task(self.loop.create_connection(lambda: Connection(self), self.host, self.port))
        timer = self.loop.call_later(self.connect_timeout, attempt.cancel)
        try:
            _, connection = await attempt
        except asyncio.CancelledError:
            raise UpstreamConnectError(f"cannot connect to {self.host}:{self.port}: timed out") from None
        except OSError as error:
            raise UpstreamConnectError(f"cannot connect to {self.host}:{self.port}: {error}") from None
        finally:
            timer.cancel()
        return connection

    async def acquire(self) -> Connection:
        return self.take() or await self.connect()

    def release(self, connection: Connection) -> None:
        if not self.open or len(self.idle) >= self.max_idle_count:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self.idle.append(connection)

    def close(self) -> None:
        """The instance left the routing table: drop idle connections; busy ones close when they finish."""
        self.open = False
        self.drain()

    def drain(self) -> None:
        """Closes the idle connections (the instance refused a new one: they are to a process that is gone)."""
        while self.idle:
            self.idle.pop().close()


def request_head(method: str, target: str, host: bytes, headers, body_length: int, extra: bytes = b"",
                 skip: frozenset = HOP_BY_HOP) -> bytes:
    """The request line and headers: the client's end-to-end headers (minus `skip`), then those set here."""
    lines = [f"{method} {target} HTTP/1.1\r\nhost: ".encode("latin-1"), host, b"\r\n"]
    for name, value in headers:
        if name not in skip:
            lines += (name, b": ", value, b"\r\n")
    lines.append(b"content-length: %d\r\n%s\r\n" % (body_length, extra))
    return b"".join(lines)


def response_headers(headers: list, keep_length: bool = False) -> list:
    """The instance's response headers minus hop-by-hop ones. The gateway sets its own Content-Length, except
    with `keep_length` (answers to HEAD, and 304), whose Content-Length is not the length of their body."""
    skip = HOP_BY_HOP_BUT_LENGTH if keep_length else HOP_BY_HOP
    return [(name, value) for name, value in headers if name not in skip]


def close_delimited(headers: list) -> bool:
    """Whether an answer with these headers ends its body by closing the connection: no Content-Length and
    not chunked. Pure."""
    for name, value in headers:
        if name == b"content-length":
            return False
        if name == b"transfer-encoding" and value.rstrip().lower().endswith(b"chunked"):
            return False
    return True


def content_length(method: str, status: int, headers, length: int) -> int | None:
    """The Content-Length the gateway adds to an answer whose body is `length` bytes (RFC 9110 8.6), or None:
    none for 1xx, 204 and 304 (a 304 may carry the instance's own, the length of the 200, relayed in
    `headers`), nor for HEAD when the instance's own was relayed. Pure."""
    if status < 200 or status == 204 or status == 304:
        return None
    if method == "HEAD" and any(name == b"content-length" for name, _ in headers):
        return None
    return length
