"""A small HTTP/1.1 server for `Gateway.serve`: asyncio protocols on uvloop, httptools for parsing.

Why not uvicorn: its per-request machinery (scope dict, ASGI message dicts, an Event, a response-cycle object
and a Task per request, header validation) made the same gateway cost 106-113 µs of CPU per request at
saturation instead of 77 µs, and at 100 requests/s it added ~0.37 ms to the mean latency where this server
added ~0.27 ms (same run; docs/gateway.md). Here a request is handed to the gateway from the callback that
parsed it, and answered from the callback that parsed the instance's answer: no coroutine, future or task on
the common path.

What a proxy needs and nothing more: keep-alive, pipelining (answered in order), chunked request bodies
(httptools decodes them), `Expect: 100-continue`, an idle timeout, and a graceful stop that lets requests in
flight finish. The gateway stays an ASGI application too (`Gateway.__call__`).

Streaming (gateway/stream.py): besides `reply(status, headers, body)`, the protocol (`reply.__self__`) answers
piece by piece: `start(status, headers)`, `piece(data)`, `end()` or `abort()` (closed without the last chunk,
so the client sees an incomplete body); chunked to HTTP/1.1 clients, delimited by the close to HTTP/1.0 ones.
Its `producer` (the upstream side) is paused while the client's transport is over its high-water mark and told
when the client goes away (`client_lost`). A chunked request body that `precheck` allows to stream
(`head.stream_body`) is handed to the handler when the headers are complete, as a BodyStream fed as it arrives.

Limits, so that an anonymous client cannot make the gateway hold what it sends (docs/gateway.md):
- connections beyond `max_connections` get 503 and are closed at once;
- a request line and headers over `max_header_bytes`, or more than `max_headers` headers, get 431 (counted as
  they arrive, so a header that never ends is cut off too);
- when the headers are complete, before any of the body is read, `precheck` (Gateway.precheck) may refuse the
  request (a missing or wrong token: 401; a Content-Length over the limit: 413): the answer goes out at once
  and the connection is closed, the body unread. `100 Continue` is sent only to a request that passed, and
  what precheck found in the headers goes to the handler with the body, so they are read once;
- a body over `max_body_bytes` (chunked, or sent beyond its Content-Length) gets 413.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections import deque
from http import HTTPStatus

import httptools

from .stream import BodyStream
from .upstream import BodyTooLarge, ClientGone, content_length

logger = logging.getLogger("ferry.gateway")
IDLE_TIMEOUT = 75.0
# After refusing a request whose body is still coming, the gateway half-closes and reads (and drops) for up to
# this long before closing: closing with unread data would reset the connection, and the client could lose
# the answer (nginx's lingering close).
LINGER = 2.0
TEXT = (b"content-type", b"text/plain")
_REASONS = {status.value: f"{status.value} {status.phrase}".encode() for status in HTTPStatus}


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 " + _REASONS.get(status, b"%d Unknown" % status) + b"\r\n"


class _Stop(Exception):
    """Raised inside a parser callback to stop reading the connection: its answer was written already."""


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("server", "transport", "parser", "client", "url", "headers", "body", "size", "busy", "queue",
                 "closed", "last_active", "refusal", "method", "keep_alive", "in_head", "head_size", "continue_",
                 "head_raw", "messages", "head", "upload", "producer", "chunked", "tunnel", "upgrade_rest")

    def __init__(self, server: Server):
        self.server = server
        self.transport = None
        self.parser = httptools.HttpRequestParser(self)
        self.client = b""
        self.url = b""
        self.headers: list = []
        self.body: list = []
        self.size = 0
        self.busy = False
        self.queue: deque = deque()  # pipelined requests, answered in order
        self.closed = False
        self.last_active = time.monotonic()
        self.refusal = None  # the answer that refuses the request being read (its body is dropped)
        self.head = None  # what precheck found in the headers of the request being read
        self.method = "GET"
        self.keep_alive = True
        self.in_head = False  # reading a request line and headers (bytes counted against max_header_bytes)
        self.head_size = 0  # of the request line and the headers httptools handed over
        self.head_raw = 0  # of whole reads that fell inside one request's head (a header still unfinished)
        self.messages = 0
        self.continue_ = False
        self.upload: BodyStream | None = None  # the body of the request being read, when it is streamed
        self.producer = None  # the upstream side of the answer in progress (paused, or told the client left)
        self.chunked = False  # the answer in progress is streamed chunked
        self.tunnel = None  # after an accepted upgrade (a queue watch's WebSocket): gets what the client sends
        self.upgrade_rest = b""  # what followed an upgrade request's head, for the tunnel

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        if len(self.server.connections) >= self.server.max_connections:
            self.closed = True
            message = (b"too many connections: the gateway holds FERRY_GATEWAY_MAX_CONNECTIONS (%d) at once; "
                       b"retry shortly\n" % self.server.max_connections)
            transport.write(status_line(503) + b"content-type: text/plain\r\nretry-after: 1\r\n"
                            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(message) + message)
            self._linger()
            self.server.refused_connections += 1
            return
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]).encode() if peer else b""
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.connections.discard(self)
        upload, self.upload = self.upload, None
        if upload is not None:
            upload.fail(ClientGone("the client went away while sending its body"))
        producer, self.producer = self.producer, None
        if producer is not None:  # its answer is not over: cut the exchange so the instance stops
            producer.client_lost()
        if self.tunnel is not None:
            self.tunnel.connection_lost()

    def pause_writing(self) -> None:
        if self.producer is not None:
            self.producer.pause_producing()

    def resume_writing(self) -> None:
        if self.producer is not None:
            self.producer.resume_producing()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.last_active = time.monotonic()
            return self.tunnel.data_received(data)
        if self.closed:
            return
        self.last_active = time.monotonic()
        # httptools holds an unfinished header itself: a read that began and ended inside one request's head
        # is counted whole here (finished parts are counted exactly in on_url / on_header).
        head_of = self.messages if self.in_head else -1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if not self.closed:  # not a refusal (those closed already): a bug in a callback
                logger.exception("unhandled error while reading a request")
                self._reply_and_close(500, b"internal gateway error")
            return
        except httptools.HttpParserUpgrade as upgrade:
            # The upgrade request went to the handler (on_message_complete): one still being handled may take the
            # connection over (take_over: a queue watch, docs/async.md); otherwise it is answered and closed.
            if self.busy:
                self.keep_alive = False
                self.upgrade_rest = data[upgrade.args[0]:] if upgrade.args else b""
            else:
                self._linger()
            return
        except httptools.HttpParserError as error:
            self._reply_and_close(400, f"malformed HTTP request: {error}".encode())
            return
        if head_of == self.messages and self.in_head:
            self.head_raw += len(data)
            if max(self.head_raw, self.head_size) > self.server.max_header_bytes:
                self._refuse_head(b"request line and headers")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []
        self.size = 0
        self.refusal = None
        self.head = None
        self.in_head = True
        self.head_size = self.head_raw = 0
        self.messages += 1
        self.continue_ = False
        self.upload = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)
        if self.head_size > self.server.max_header_bytes:
            self._refuse_head(b"request line")
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.server.max_header_bytes:
            self._refuse_head(b"request line and headers")
            raise _Stop
        if len(self.headers) > self.server.max_headers:
            self._refuse_head(b"header count")
            raise _Stop
        if name == b"expect" and value.lower() == b"100-continue":
            self.continue_ = True

    def on_headers_complete(self) -> None:
        """Before any of the body: refuse now what `precheck` refuses (no credentials, a body too large)."""
        self.in_head = False
        found = self.server.precheck(self.parser.get_method().decode("latin-1"), self.url, self.headers)
        if found.__class__ is not tuple and self.parser.should_upgrade() and not self.server.upgrade_allowed(found):
            found = (400, [TEXT], b"protocol upgrades are not supported here (a WebSocket serves only an "
                                  b"asynchronous service's watch)\n")
        if found.__class__ is not tuple:
            self.head = found
            if self.continue_:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if found is not None and found.stream_body and not self.busy and not self.queue:
                self._stream_request(found)
            return
        self._refuse(found)

    def _stream_request(self, head) -> None:
        """A chunked body forwarded as it arrives: the request is handled now, its body fed as it comes."""
        parser = self.parser
        self.upload = BodyStream(self.transport)
        self._start((parser.get_method().decode("latin-1"), self.url, self.headers, self.upload,
                     parser.should_keep_alive(), None, head))

    def _refuse(self, refusal) -> None:
        """Answer `refusal` now and stop reading, or, pipelined behind requests not answered yet, in turn (its
        body dropped meanwhile)."""
        if not self.busy and not self.queue:
            self.busy = True  # answered here: the rest of the body is never read
            self.method = self.parser.get_method().decode("latin-1")
            self.keep_alive = False
            self.server.running += 1
            self.reply(*refusal)
            raise _Stop
        self.refusal = refusal

    def on_body(self, body: bytes) -> None:
        if self.refusal is not None:
            return
        self.size += len(body)
        if self.size > self.server.max_body_bytes:
            if self.upload is not None:  # part of it went on already: the exchange is cut, the gateway says 413
                self.keep_alive = False
                return self.upload.fail(BodyTooLarge(f"the body is larger than FERRY_GATEWAY_MAX_BODY_BYTES "
                                                     f"({self.server.max_body_bytes} bytes)"))
            self.body = []
            self._refuse(self.server.too_large())
        elif self.upload is not None:
            self.upload.feed(body)
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        upload = self.upload
        if upload is not None:  # its request was handled when its headers were complete
            self.upload = None
            return upload.finish()
        parser = self.parser
        request = (parser.get_method().decode("latin-1"), self.url, self.headers,
                   b"".join(self.body) if len(self.body) != 1 else self.body[0],
                   parser.should_keep_alive(), self.refusal, self.head)
        if self.busy:
            self.queue.append(request)
            if len(self.queue) > 16:  # a client pipelining without reading: stop reading until we catch up
                self.transport.pause_reading()
            return
        self._start(request)

    def _start(self, request) -> None:
        method, url, headers, body, keep_alive, refusal, head = request
        self.busy = True
        self.method = method
        self.keep_alive = keep_alive
        self.server.running += 1
        if refusal is not None:
            self.keep_alive = False
            return self.reply(*refusal)
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            return self.reply(400, [(b"content-type", b"text/plain")], b"malformed request target\n")
        try:
            self.server.handler(method, parsed.path.decode("latin-1"), parsed.query or b"", headers, body,
                                self.client, self.reply, head)
        except Exception:  # noqa: BLE001 -- a bug must cost one request, not the connection's others
            logger.exception("unhandled error for %s %r", method, url)
            if self.busy:
                self.reply(500, [(b"content-type", b"text/plain")], b"internal gateway error\n")

    def reply(self, status: int, headers, body: bytes) -> None:
        """The answer to the request in progress (called once per request, maybe from another callback)."""
        if not self.busy:
            return
        self.producer = None
        if self.upload is not None:  # answered before its streamed body ended: the rest is read and dropped
            self.upload.detach()
        self._write(status, headers, b"" if self.method == "HEAD" else body, len(body), self.keep_alive)
        self._answered()

    def take_over(self, tunnel, head: bytes):
        """The request in progress accepted an upgrade: `head` (its 101) goes out and, from now on, what the
        client sends goes to `tunnel.data_received` (and the end of the connection to `tunnel.connection_lost`).
        Returns the transport."""
        self.busy = False
        self.server.running -= 1
        self.tunnel = tunnel
        self.transport.write(head)
        rest, self.upgrade_rest = self.upgrade_rest, b""
        if rest:
            tunnel.data_received(rest)
        return self.transport

    # a streamed answer: start, then pieces, then end (or abort)
    def start(self, status: int, headers) -> bool:
        """Writes the head of a streamed answer; False when the client is gone already."""
        if not self.busy or self.closed:
            return False
        parts = [status_line(status)]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        # Read here, not per request (it costs on the fast path): the parser may be on a later pipelined request
        # by now, but a client speaks one HTTP version on a connection.
        if self.parser.get_http_version() == "1.0":  # no chunked encoding: the body ends with the connection
            self.keep_alive = self.chunked = False
            parts.append(b"connection: close\r\n\r\n")
        else:
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n\r\n" if self.keep_alive
                         else b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        self.transport.write(b"".join(parts))
        return True

    def piece(self, data: bytes) -> None:
        if data and not self.closed:  # an empty chunk would end the body
            if self.chunked:
                self.transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))
            else:
                self.transport.write(data)

    def end(self) -> None:
        if not self.busy:
            return
        self.producer = None
        if self.chunked and not self.closed:
            self.transport.write(b"0\r\n\r\n")
        self._answered()

    def abort(self) -> None:
        """Ends a streamed answer abnormally: the connection is closed without the last chunk."""
        if not self.busy:
            return
        self.producer = None
        self.busy = False
        self.server.running -= 1
        self.closed = True
        self.transport.close()  # what was written still goes out first

    def _answered(self) -> None:
        keep_alive = self.keep_alive
        self.busy = False
        self.server.running -= 1
        self.last_active = time.monotonic()
        if not keep_alive or self.server.stopping:
            self._linger()
        elif self.queue:
            if len(self.queue) <= 16:
                self.transport.resume_reading()
            # On the next turn, not nested in this answer's callback.
            self.server.loop.call_soon(self._start, self.queue.popleft())

    def _write(self, status: int, headers, body: bytes, length: int, keep_alive: bool) -> None:
        if self.closed:
            return
        parts = [status_line(status)]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        length = content_length(self.method, status, headers, length)
        if length is not None:
            parts.append(b"content-length: %d\r\n" % length)
        parts.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
        parts.append(body)
        self.transport.write(b"".join(parts))

    def _reply_and_close(self, status: int, message: bytes) -> None:
        self._write(status, [TEXT], message + b"\n", len(message) + 1, False)
        self._linger()

    def _linger(self) -> None:
        """Close after the answer: half-close now (the client reads the answer, then EOF), drop whatever it
        still sends, and close for good when it closes or after LINGER seconds."""
        if self.closed and self.transport.is_closing():
            return
        self.closed = True  # nothing more is written, and what arrives is dropped (data_received)
        transport = self.transport
        try:
            if transport.can_write_eof():
                transport.write_eof()
                self.server.loop.call_later(LINGER, transport.close)
                return
        except (OSError, RuntimeError):
            pass
        transport.close()

    def eof_received(self):
        self.transport.close()  # the client is done: so are we, lingering or not
        return False

    def _refuse_head(self, what: bytes) -> None:
        server = self.server
        self._reply_and_close(431, b"%s too large: at most FERRY_GATEWAY_MAX_HEADER_BYTES (%d) bytes of request line "
                                   b"and headers and FERRY_GATEWAY_MAX_HEADERS (%d) headers"
                              % (what, server.max_header_bytes, server.max_headers))


class Server:
    """Serves `handler(method, path, query, headers, body, client, reply, head)`, which calls
    `reply(status, headers, body)` once, at once or later from another callback (Gateway.serve); `head` is
    what `precheck` returned for these headers."""

    def __init__(self, handler, loop, *, precheck=None, too_large=None, upgrade_allowed=None,
                 max_connections: int = 1024,
                 max_header_bytes: int = 64 * 1024, max_headers: int = 100, max_body_bytes: int = 64 * 1024 * 1024):
        self.handler = handler
        self.loop = loop
        # precheck(method, url, headers) -> (status, headers, body) to refuse, or its findings for the handler:
        # called before the body is read.
        self.precheck = precheck or (lambda method, url, headers: None)
        self.too_large = too_large or (lambda: (413, [TEXT], b"request body too large\n"))
        # upgrade_allowed(what precheck found) -> whether the handler may take the connection over (take_over)
        self.upgrade_allowed = upgrade_allowed or (lambda head: False)
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body_bytes = max_body_bytes
        self.refused_connections = 0
        self.connections: set[HttpProtocol] = set()
        self.running = 0  # requests being handled
        self.stopping = False
        self.server = None

    async def start(self, host: str, port: int, backlog: int = 2048, sock: socket.socket | None = None) -> None:
        if sock is not None:
            self.server = await self.loop.create_server(lambda: HttpProtocol(self), sock=sock, backlog=backlog)
        else:
            self.server = await self.loop.create_server(lambda: HttpProtocol(self), host, port, backlog=backlog,
                                                        reuse_address=True)
        self.loop.create_task(self._close_idle_forever())

    async def _close_idle_forever(self) -> None:
        """One sweep every few seconds instead of a timer per connection per request."""
        while True:
            await asyncio.sleep(5)
            limit = time.monotonic() - IDLE_TIMEOUT
            for connection in [c for c in self.connections
                               if not c.busy and c.last_active < limit and c.tunnel is None]:
                connection.transport.close()

    async def stop(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish (up to `grace` seconds), then close connections."""
        self.stopping = True
        self.server.close()
        for connection in [c for c in self.connections if not c.busy]:
            connection.transport.close()
        deadline = self.loop.time() + grace
        while self.running and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.transport.close()


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket the supervisor holds for us (scripts/supervise.py --listen)."""
    try:
        sock = socket.socket(fileno=fd)
        sock.getsockname()
    except OSError as error:
        raise SystemExit(f"ferry-gateway: FERRY_LISTEN_FD={fd} is not an open socket: {error.strerror or error}") \
            from None
    return sock


async def serve(gateway, host: str, port: int, grace: float = 10.0, listen_fd: int | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    limits = gateway.settings
    server = Server(gateway.serve, loop, precheck=gateway.precheck, too_large=gateway.too_large,
                    upgrade_allowed=gateway.upgrade_allowed,
                    max_connections=limits.max_connections, max_header_bytes=limits.max_header_bytes,
                    max_headers=limits.max_headers, max_body_bytes=limits.max_body_bytes)
    sock = inherited_socket(listen_fd) if listen_fd is not None else None
    if sock is not None:
        # Connections queued while we were down are accepted the moment we serve: load the routing table
        # first, or they would be answered 503 "not loaded yet".
        await gateway.start()
        await server.start(host, port, sock=sock)
        host, port = sock.getsockname()[:2]
        logger.info("Ferry gateway listening on http://%s:%d (a socket the supervisor holds)", host, port)
    else:
        try:
            await server.start(host, port)
        except OSError as error:
            raise SystemExit(f"ferry-gateway: cannot listen on {host}:{port}: {error.strerror or error} "
                             "(set FERRY_GATEWAY_PORT / FERRY_GATEWAY_HOST)") from None
        await gateway.start()
        logger.info("Ferry gateway listening on http://%s:%d", host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("stopping: finishing requests in flight (up to %g s)", grace)
    await server.stop(grace)
    await gateway.stop()
    logger.info("stopped")
