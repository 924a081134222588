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
- An answer whose length is not declared (chunked, or ending at the close) or that is server-sent events is
  streamed: `done` gets the Connection itself as the body as soon as the head is parsed, and the pieces go to
  the sink given to `attach` as they arrive (gateway/stream.py). Answers with a Content-Length are collected
  and handed over whole (the fast path). The route's timeout bounds the time to the head; from there only
  silence longer than `stream_idle` seconds (no byte from the instance, no drain by the client) cuts it.
- A request body may be streamed too (gateway/stream.py BodyStream): sent chunked, piece by piece.
"""

from __future__ import annotations

import asyncio
import select
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


class StreamSilent(UpstreamTimeout):
    """A streamed exchange (answer or request body) stayed silent longer than the idle limit."""


class ClientGone(UpstreamError):
    """The client went away before its answer ended: the exchange was cut (so the instance stops working)."""


class BodyTooLarge(UpstreamError):
    """A streamed request body went past FERRY_GATEWAY_MAX_BODY_BYTES: the exchange was cut."""


class Connection(asyncio.Protocol):
    """One keep-alive connection. `send(head, body, timeout, done)` writes one request and later calls
    `done(status, headers, body, error)` from the callback that read the answer (no future, no task: the hot
    path stays synchronous); `exchange()` is the same for coroutines. A streamed answer's `body` is this
    Connection: `attach(sink)` then relays its pieces (`sink.piece(data)`, then `sink.end()` or
    `sink.fail(error)`)."""

    __slots__ = ("pool", "transport", "parser", "done", "headers", "body", "closed", "idle_since", "timer",
                 "headers_done", "bodiless", "answered", "streaming", "sink", "ended", "failure", "last", "upload",
                 "timeout", "poller")

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
        self.streaming = False  # relaying a streamed answer (its head went to `done`)
        self.sink = None  # where a streamed answer's pieces go (None: held in `body` until `attach`)
        self.ended = None  # a streamed answer that ended before `attach`: whether the connection may be reused
        self.failure = None  # a streamed answer that failed before `attach`
        self.last = 0.0  # loop time of the last sign of life of a stream (a piece, the client draining)
        self.upload = None  # a request body being streamed (gateway/stream.py BodyStream)
        self.timeout = 0.0  # the route's timeout, armed once a streamed request body ended
        self.poller = None  # polls the socket before a reuse (`stale`)

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        fileno = getattr(transport.get_extra_info("socket"), "fileno", None)
        if fileno is not None:
            self.poller = select.poll()
            self.poller.register(fileno(), select.POLLIN | select.POLLPRI)

    def stale(self) -> bool:
        """Whether the idle connection has something to read: the instance closed or reset it (an idle HTTP/1.1
        connection is never sent anything unasked). The event loop learns that on its next turn; a request
        taken in this turn (the instance was killed a moment ago, and its answers to other clients were just
        relayed) would be written to a dead connection and fail after being sent, which a POST cannot be
        retried from. Checked here it is refused before anything is sent, and the request goes elsewhere or
        waits (0.65 us: one poll(2) with no wait)."""
        return self.poller is not None and bool(self.poller.poll(0))

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamError(f"unreadable response: {error}"))

    def connection_lost(self, exc) -> None:
        self.closed = True
        if exc is None and self.headers_done and (self.done is not None or self.streaming) \
                and close_delimited(self.headers):
            # Neither Content-Length nor chunked: the body is everything until the instance closed (RFC 9112 6.3).
            if self.streaming:
                return self._stream_end(False)
            return self._complete(self.parser.get_status_code(), False)
        why = "the instance closed the connection" + (f": {exc}" if exc else "")
        self._fail(UpstreamError(why) if self.answered else UpstreamClosed(why + " before answering"))

    def pause_writing(self) -> None:
        if self.upload is not None:  # the instance does not take the request body as fast as the client sends it
            self.upload.pause()

    def resume_writing(self) -> None:
        if self.upload is not None:
            self.upload.resume()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        if self.done is None:
            return
        status = self.parser.get_status_code()
        if status < 200:
            return
        if self.bodiless:
            # An answer to HEAD has no body whatever its headers say; the parser, which cannot be told the
            # request was HEAD, would wait for one: answer now and drop the connection.
            self._complete(status, False)
        elif streamed(status, self.headers):
            self._stream(status)

    def on_body(self, body: bytes) -> None:
        if self.streaming:
            self.last = self.pool.loop.time()
            if self.sink is not None:
                return self.sink.piece(body)
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.streaming:
            return self._stream_end(self.parser.should_keep_alive())
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
            self._finish(keep_alive)

    def _finish(self, keep_alive: bool) -> None:
        if self.upload is not None:  # answered before the client sent all of its body: the rest is dropped
            self.upload.detach()
            self.upload = None
            keep_alive = False
        if keep_alive:
            self.pool.release(self)
        else:
            self.close()

    def _fail(self, error: Exception) -> None:
        if self.upload is not None:
            self.upload.detach()
            self.upload = None
        done, self.done = self.done, None
        if done is not None:
            self.timer.cancel()
            self.close()
            done(0, None, None, error)
        elif self.streaming:
            self.streaming = False
            self.timer.cancel()
            self.close()
            sink, self.sink = self.sink, None
            if sink is None:
                self.failure = error
            else:
                sink.fail(error)

    def _timed_out(self) -> None:
        self._fail(UpstreamTimeout("the instance did not answer in time"))

    # streamed answers
    def _stream(self, status: int) -> None:
        """The head of an answer to relay piece by piece: handed over now, with this connection as its body."""
        self.streaming = True
        self.ended = self.failure = None
        loop = self.pool.loop
        self.last = loop.time()
        if self.upload is None:  # the route's timeout bounded the wait for the head; silence bounds the rest
            self.timer.cancel()
            self.timer = loop.call_later(self.pool.stream_idle, self._idle)
        done, self.done = self.done, None
        done(status, self.headers, self, None)

    def attach(self, sink) -> None:
        """Relays the streamed answer to `sink` from now on (what arrived before goes first)."""
        self.sink = sink
        if self.body:
            pieces, self.body = self.body, []
            for piece in pieces:
                sink.piece(piece)
        if self.failure is not None:
            self.sink, failure, self.failure = None, self.failure, None
            sink.fail(failure)
        elif self.ended is not None:
            self.sink, keep_alive, self.ended = None, self.ended, None
            self._ended(sink, keep_alive)
        elif self.streaming:
            self.resume_reading()

    def _stream_end(self, keep_alive: bool) -> None:
        self.streaming = False
        self.timer.cancel()
        sink, self.sink = self.sink, None
        if sink is None:  # not attached yet: `attach` ends it
            self.ended = keep_alive
            return
        self._ended(sink, keep_alive)

    def _ended(self, sink, keep_alive: bool) -> None:
        sink.end()
        if keep_alive and not self.closed:
            self.transport.resume_reading()  # paused for a slow client, perhaps: not so in the pool
        self._finish(keep_alive)

    def _idle(self) -> None:
        loop = self.pool.loop
        left = self.last + self.pool.stream_idle - loop.time()
        if left > 0:  # a cheap check instead of re-arming a timer for every piece
            self.timer = loop.call_later(left, self._idle)
            return
        self._fail(StreamSilent(f"nothing moved for {self.pool.stream_idle:g} s (FERRY_GATEWAY_STREAM_IDLE_TIMEOUT)"))

    def pause_reading(self) -> None:
        """The client does not take the stream as fast as the instance sends it: stop reading the instance."""
        if not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.last = self.pool.loop.time()  # the client draining is progress too
        if not self.closed:
            self.transport.resume_reading()

    def abandon(self) -> None:
        """The client went away: cut the exchange (closing the connection tells the instance to stop)."""
        self.sink = self.ended = self.failure = None
        if self.done is not None:
            return self._fail(ClientGone("the client went away"))
        if self.upload is not None:
            self.upload.detach()
            self.upload = None
        if self.streaming:
            self.streaming = False
            self.timer.cancel()
        self.close()

    # streamed request bodies (gateway/stream.py BodyStream calls these)
    def upload_piece(self, data: bytes) -> None:
        self.last = self.pool.loop.time()
        if not self.closed:
            self.transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))

    def upload_end(self) -> None:
        self.upload = None
        if not self.closed:
            self.transport.write(b"0\r\n\r\n")
        if self.done is not None:  # the wait for the answer's head starts when the body is all sent
            self.timer.cancel()
            self.timer = self.pool.loop.call_later(self.timeout, self._timed_out)

    def upload_failed(self, error: Exception) -> None:
        self.upload = None
        self._fail(error)

    # requests
    def send(self, head: bytes, body, timeout: float, done, bodiless: bool = False) -> None:
        """`bodiless`: the request is HEAD, so the answer has no body. `body`: bytes, or a BodyStream (the
        head then says Transfer-Encoding: chunked)."""
        self.done = done
        self.headers = []
        self.body = []
        self.headers_done = False
        self.bodiless = bodiless
        self.answered = False
        if body.__class__ is not bytes:
            return self._send_streamed(head, body, timeout)
        # One write: head and body leave in one segment when they fit (TCP_NODELAY is on).
        if len(body) < 65536:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
        # A timer handle is far cheaper than asyncio.wait_for (which wraps the wait in a task).
        self.timer = self.pool.loop.call_later(timeout, self._timed_out)

    def _send_streamed(self, head: bytes, body, timeout: float) -> None:
        """While the client streams its body, silence bounds the exchange; the route's timeout starts with its
        end (a long upload is not an instance that does not answer)."""
        self.transport.write(head)
        self.upload = body
        self.timeout = timeout
        loop = self.pool.loop
        self.last = loop.time()
        self.timer = loop.call_later(self.pool.stream_idle, self._idle)
        body.bind(self)

    async def exchange(self, head: bytes, body, timeout: float, bodiless: bool = False):
        """(status, headers, body), or raises UpstreamError. A streamed answer's body is this connection,
        paused until `attach`."""
        answer = self.pool.loop.create_future()

        def done(status, headers, content, error):
            if content is self:
                self.pause_reading()  # what arrives before the coroutine attaches a sink stays small
            if not answer.done():
                if error is not None:
                    answer.set_exception(error)
                else:
                    answer.set_result((status, headers, content))
            elif content is self:  # nobody waits for it any more (cancelled)
                self.abandon()

        self.send(head, body, timeout, done, bodiless)
        return await answer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Idle connections to one instance (LIFO: the most recently used one is the warmest)."""

    __slots__ = ("loop", "host", "port", "idle", "max_idle_count", "max_idle_age", "connect_timeout", "open",
                 "stream_idle")

    def __init__(self, host: str, port: int, *, max_idle_count: int = 64, max_idle_age: float = 2.0,
                 connect_timeout: float = 2.0, stream_idle: float = 600.0):
        self.loop = asyncio.get_running_loop()
        self.host = host
        self.port = port
        self.idle: deque[Connection] = deque()
        self.max_idle_count = max_idle_count
        self.max_idle_age = max_idle_age
        self.connect_timeout = connect_timeout
        self.open = True
        self.stream_idle = stream_idle  # seconds a stream may stay silent (FERRY_GATEWAY_STREAM_IDLE_TIMEOUT)

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
            if now - connection.idle_since > self.max_idle_age or connection.stale():
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


def request_head(method: str, target: str, host: bytes, headers, body_length: int | None, extra: bytes = b"",
                 skip: frozenset = HOP_BY_HOP) -> bytes:
    """The request line and headers: the client's end-to-end headers (minus `skip`), then those set here.
    `body_length` None: the body is streamed (chunked)."""
    lines = [f"{method} {target} HTTP/1.1\r\nhost: ".encode("latin-1"), host, b"\r\n"]
    for name, value in headers:
        if name not in skip:
            lines += (name, b": ", value, b"\r\n")
    if body_length is None:
        lines.append(b"transfer-encoding: chunked\r\n%s\r\n" % extra)
    else:
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


def streamed(status: int, headers: list) -> bool:
    """Whether an answer is relayed piece by piece as it arrives rather than collected: its length is not
    declared (chunked, or it ends when the instance closes), or it is server-sent events. Pure."""
    if status < 200 or status == 204 or status == 304:
        return False
    declared = False
    for name, value in headers:
        if name == b"content-length":
            declared = True
        elif name == b"content-type" and value[:17].lower() == b"text/event-stream":
            return True
    return not declared


def content_length(method: str, status: int, headers, length: int) -> int | None:
    """The Content-Length the gateway adds to an answer whose body is `length` bytes (RFC 9110 8.6), or None:
    none for 1xx, 204 and 304 (a 304 may carry the instance's own, the length of the 200, relayed in
    `headers`), nor for HEAD when the instance's own was relayed. Pure."""
    if status < 200 or status == 204 or status == 304:
        return None
    if method == "HEAD" and any(name == b"content-length" for name, _ in headers):
        return None
    return length
