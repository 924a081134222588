"""A small HTTP/1.1 server for `Gateway.serve`: asyncio protocols on uvloop, httptools for parsing.

Why not uvicorn: its per-request machinery (scope dict, ASGI message dicts, an Event, a response-cycle object
and a Task per request, header validation) made the same gateway cost 106-113 µs of CPU per request at
saturation instead of 77 µs, and at 100 requests/s it added ~0.37 ms to the mean latency where this server
added ~0.27 ms (same run; docs/gateway.md). Here a request is handed to the gateway from the callback that
parsed it, and answered from the callback that parsed the instance's answer: no coroutine, future or task on
the common path.

What a proxy needs and nothing more: keep-alive, pipelining (answered in order), chunked request bodies
(httptools decodes them), `Expect: 100-continue`, a body size limit, an idle timeout, and a graceful stop that
lets requests in flight finish. The gateway stays an ASGI application too (`Gateway.__call__`).
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

from .upstream import content_length

logger = logging.getLogger("ferry.gateway")
MAX_BODY = 256 * 1024 * 1024
IDLE_TIMEOUT = 75.0
_REASONS = {status.value: f"{status.value} {status.phrase}".encode() for status in HTTPStatus}


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 " + _REASONS.get(status, b"%d Unknown" % status) + b"\r\n"


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("server", "transport", "parser", "client", "url", "headers", "body", "size", "busy", "queue",
                 "closed", "last_active", "too_large", "method", "keep_alive")

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
        self.too_large = False
        self.method = "GET"
        self.keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]).encode() if peer else b""
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reply_and_close(400, b"protocol upgrades are not supported")
        except httptools.HttpParserError as error:
            self._reply_and_close(400, f"malformed HTTP request: {error}".encode())

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []
        self.size = 0
        self.too_large = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))
        # Answered as soon as seen (no on_headers_complete callback: one Python call less per request).
        if name == b"expect" and value.lower() == b"100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_BODY:
            self.too_large = True
            self.body = []
        elif not self.too_large:
            self.body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        request = (parser.get_method().decode("latin-1"), self.url, self.headers,
                   b"".join(self.body) if len(self.body) != 1 else self.body[0],
                   parser.should_keep_alive(), self.too_large)
        if self.busy:
            self.queue.append(request)
            if len(self.queue) > 16:  # a client pipelining without reading: stop reading until we catch up
                self.transport.pause_reading()
            return
        self._start(request)

    def _start(self, request) -> None:
        method, url, headers, body, keep_alive, too_large = request
        self.busy = True
        self.method = method
        self.keep_alive = keep_alive
        self.server.running += 1
        if too_large:
            self.keep_alive = False
            return self.reply(413, [(b"content-type", b"text/plain")], b"request body too large\n")
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            return self.reply(400, [(b"content-type", b"text/plain")], b"malformed request target\n")
        try:
            self.server.handler(method, parsed.path.decode("latin-1"), parsed.query or b"", headers, body,
                                self.client, self.reply)
        except Exception:  # noqa: BLE001 -- a bug must cost one request, not the connection's others
            logger.exception("unhandled error for %s %r", method, url)
            if self.busy:
                self.reply(500, [(b"content-type", b"text/plain")], b"internal gateway error\n")

    def reply(self, status: int, headers, body: bytes) -> None:
        """The answer to the request in progress (called once per request, maybe from another callback)."""
        if not self.busy:
            return
        keep_alive = self.keep_alive
        self._write(status, headers, b"" if self.method == "HEAD" else body, len(body), keep_alive)
        self.busy = False
        self.server.running -= 1
        self.last_active = time.monotonic()
        if not keep_alive or self.server.stopping:
            self.transport.close()
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
        self._write(status, [(b"content-type", b"text/plain")], message + b"\n", len(message) + 1, False)
        self.transport.close()


class Server:
    """Serves `handler(method, path, query, headers, body, client, reply)`, which calls
    `reply(status, headers, body)` once, at once or later from another callback (Gateway.serve)."""

    def __init__(self, handler, loop):
        self.handler = handler
        self.loop = loop
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
            for connection in [c for c in self.connections if not c.busy and c.last_active < limit]:
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
    server = Server(gateway.serve, loop)
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
