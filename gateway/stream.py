"""Streaming through the gateway: answers relayed piece by piece as the instance sends them, and request
bodies forwarded as the client sends them, without collecting either first.

- `Relay`: an answer with no Content-Length (chunked, or ending when the instance closes) or of type
  text/event-stream. The upstream Connection (upstream.py) hands over its head as soon as it is parsed; the
  Relay writes it to the client's responder (server.HttpProtocol, or `AsgiResponder` under an ASGI server)
  and then each piece as it arrives: nothing is held back. Backpressure: while the client's transport is over
  its high-water mark the instance's connection is not read. The client going away closes the instance's
  connection at once (an LLM engine stops generating for a request whose connection closed) and is counted;
  the instance going away ends the client's stream abnormally (no last chunk), never with a second status.
  The slot, the metrics and mirror copies are settled when the stream ends.
- `BodyStream`: a chunked request body, sent to the instance chunked as it arrives. Only where nothing
  needs the whole body first (`streams_body`): an EAS signature covers the body, the OpenAI API routes by the
  body's `model`, and a mirrored route copies the body, so those are still collected (up to the limit).
  A streamed body is never sent twice: once any of it went to an instance, a failure is not retried.
The common case (a small JSON request with a Content-Length answer) never reaches this module.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .upstream import BodyTooLarge, ClientGone, content_length

logger = logging.getLogger("ferry.gateway")
_perf = time.perf_counter
HOLD = 256 * 1024  # bytes of a streamed request body held while no instance takes it yet (then the client waits)


def streams_body(head) -> bool:
    """Whether a request's body may be forwarded as it arrives: chunked (no Content-Length), for a service
    the path names and a token accepted from the headers alone (not a signature, which covers the body), and
    not mirrored (the copies need the body). Pure."""
    route = head.route
    return head.chunked and head.length is None and route is not None and not route.mirror_targets


class Relay:
    """One streamed answer on its way from an instance's Connection (which calls `piece`, then `end` or
    `fail`) to a client's responder (which calls `pause_producing`, `resume_producing`, `client_lost`)."""

    __slots__ = ("gateway", "request", "admission", "stats", "status", "headers", "connection", "responder",
                 "first", "over")

    def __init__(self, gateway, request, admission, stats, status: int, headers, connection):
        self.gateway = gateway
        self.request = request
        self.admission = admission
        self.stats = stats
        self.status = status
        self.headers = headers
        self.connection = connection
        self.responder = None
        self.first = True
        self.over = False

    def attach(self, responder) -> None:
        self.responder = responder
        self.stats.stream_began()
        if not responder.start(self.status, self.headers):  # the client left while the head was awaited
            return self.client_lost()
        responder.producer = self
        self.connection.attach(self)

    # from the instance's connection
    def piece(self, data: bytes) -> None:
        if self.first:
            self.first = False
            self.stats.first_byte(_perf() - self.request.began)
        self.responder.piece(data)

    def end(self) -> None:
        self._over(self.status, True)

    def fail(self, error: Exception) -> None:
        logger.warning("the stream from %s of %s broke off: %s", self.admission.instance.name,
                       self.admission.route.name, error)
        self._over(502, False)

    # from the client's side
    def pause_producing(self) -> None:
        self.connection.pause_reading()

    def resume_producing(self) -> None:
        self.connection.resume_reading()

    def client_lost(self) -> None:
        self.connection.abandon()
        self.stats.stream_cut()
        self._over(499, False)  # nginx's "client closed request"

    def _over(self, status: int, complete: bool) -> None:
        if self.over:
            return
        self.over = True
        responder = self.responder
        responder.producer = None
        if complete:
            responder.end()
        else:
            responder.abort()
        self.gateway.settle(self.request, self.admission, self.stats, status)


class BodyStream:
    """A request body forwarded as it arrives. The client's side (server.py, or the ASGI entry) calls `feed`,
    then `finish` or `fail`; the instance's Connection calls `bind` (from then pieces go straight to it),
    `pause`/`resume` (its transport's high-water mark) and `detach` (the exchange is over: drop the rest).
    `source` is what is paused while the instance does not take more: the client's transport."""

    __slots__ = ("source", "pieces", "held", "ended", "failure", "sink", "bound", "detached")

    def __init__(self, source):
        self.source = source
        self.pieces: list[bytes] = []
        self.held = 0
        self.ended = False
        self.failure = None
        self.sink = None
        self.bound = False  # some of it may have reached an instance: it cannot be sent again
        self.detached = False

    def feed(self, data: bytes) -> None:
        if not data or self.detached or self.failure is not None:
            return
        if self.sink is not None:
            return self.sink.upload_piece(data)
        self.pieces.append(data)
        self.held += len(data)
        if self.held > HOLD:  # no instance yet (queued, connecting): the client waits rather than we hold it
            self.source.pause_reading()

    def finish(self) -> None:
        self.ended = True
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.upload_end()

    def fail(self, error: Exception) -> None:
        if self.ended or self.failure is not None:
            return
        self.failure = error
        self.pieces = []
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.upload_failed(error)

    def bind(self, connection) -> None:
        self.bound = True
        if self.failure is not None:
            return connection.upload_failed(self.failure)
        pieces, self.pieces, self.held = self.pieces, [], 0
        for piece in pieces:
            connection.upload_piece(piece)
        if self.ended:
            connection.upload_end()
        else:
            self.sink = connection
            self.source.resume_reading()

    def detach(self) -> None:
        self.sink = None
        self.detached = True
        self.pieces = []
        self.source.resume_reading()  # the rest is read and dropped

    def pause(self) -> None:
        self.source.pause_reading()

    def resume(self) -> None:
        self.source.resume_reading()


def replayable(body) -> bool:
    """Whether a failed exchange's body can be sent again: bytes, or a stream none of which went out."""
    return body.__class__ is bytes or not body.bound


async def drain(connection) -> None:
    """Reads a streamed answer to its end and drops it (mirror copies: the target does the whole work)."""
    ended = asyncio.get_running_loop().create_future()
    connection.attach(_Discard(ended))
    await ended


class _Discard:
    __slots__ = ("ended",)

    def __init__(self, ended: asyncio.Future):
        self.ended = ended

    def piece(self, data: bytes) -> None:
        pass

    def end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def fail(self, error: Exception) -> None:
        if not self.ended.done():
            self.ended.set_exception(error)


# -- ASGI ---------------------------------------------------------------------------------------------------
async def serve_asgi(gateway, scope, receive, send) -> None:
    """One HTTP request under an ASGI server (Gateway.__call__): a streamed answer is sent as
    http.response.body messages with more_body as its pieces arrive."""
    method = scope["method"]
    raw_path = scope.get("raw_path") or scope["path"].encode()
    head = gateway.precheck(method, raw_path, scope["headers"])
    refusal = head if head.__class__ is tuple else None
    feeding = None
    if refusal is not None:
        body = None
    elif head is not None and head.stream_body:  # forwarded as it arrives
        source = _AsgiSource()
        body = BodyStream(source)
        feeding = asyncio.ensure_future(_feed(receive, body, source, gateway.settings.max_body_bytes))
    else:
        body = await read_body(receive, gateway.settings.max_body_bytes)
    try:
        await _answer(gateway, scope, receive, send, method, raw_path, head, refusal, body, feeding)
    finally:
        if feeding is not None:
            feeding.cancel()


async def _answer(gateway, scope, receive, send, method, raw_path, head, refusal, body, feeding) -> None:
    if refusal is not None:
        status, headers, answer = refusal
    elif body is None:
        status, headers, answer = gateway.too_large()
    else:
        client = (scope.get("client") or ("",))[0].encode()
        status, headers, answer = await gateway.handle(method, raw_path.decode("latin-1"),
                                                       scope.get("query_string") or b"", scope["headers"], body,
                                                       client, head)
    if answer.__class__ is Relay:
        responder = AsgiResponder(send)
        answer.attach(responder)
        return await responder.pump(receive, feeding)
    length = content_length(method, status, headers, len(answer))
    if length is not None:
        headers = [*headers, (b"content-length", str(length).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else answer})


async def read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is over `limit` bytes."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks, size = [body], len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class AsgiResponder:
    """The responder of a streamed answer under an ASGI server: pieces are queued by the callbacks and sent
    by the request's coroutine (`pump`); the instance is paused while more than HOLD bytes wait."""

    __slots__ = ("send", "queue", "held", "wake", "producer", "paused", "state", "started", "gone")

    def __init__(self, send):
        self.send = send
        self.queue: list[bytes] = []
        self.held = 0
        self.wake = asyncio.Event()
        self.producer = None
        self.paused = False
        self.state = None  # None: streaming; "end" or "abort" once over
        self.started = None  # (status, headers) to send first
        self.gone = False

    def start(self, status: int, headers) -> bool:
        if self.gone:
            return False
        self.started = (status, headers)
        self.wake.set()
        return True

    def piece(self, data: bytes) -> None:
        if data:
            self.queue.append(data)
            self.held += len(data)
            if self.held > HOLD and not self.paused and self.producer is not None:
                self.paused = True
                self.producer.pause_producing()
            self.wake.set()

    def end(self) -> None:
        self.state = "end"
        self.wake.set()

    def abort(self) -> None:
        self.state = "abort"
        self.wake.set()

    async def pump(self, receive, feeding=None) -> None:
        """Sends the stream; a client that disconnects (the server's `http.disconnect`) cuts it. `feeding`: the
        task still reading a streamed request body (it reads the disconnect itself meanwhile)."""
        watcher = asyncio.ensure_future(_disconnected(receive, feeding))
        watcher.add_done_callback(lambda _: self._lost())
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if self.started is not None:
                    status, headers = self.started
                    self.started = None
                    await self.send({"type": "http.response.start", "status": status, "headers": headers})
                if self.queue:
                    body, self.queue, self.held = b"".join(self.queue), [], 0
                    await self.send({"type": "http.response.body", "body": body, "more_body": True})
                    if self.paused and self.producer is not None:
                        self.paused = False
                        self.producer.resume_producing()
                if self.queue:
                    self.wake.set()
                elif self.state == "end":
                    await self.send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                elif self.state == "abort":
                    if self.gone:
                        return
                    raise StreamBrokenOff("the instance broke the stream off")  # the server closes the connection
        finally:
            watcher.cancel()

    def _lost(self) -> None:
        if self.state is None and not self.gone:
            self.gone = True
            producer, self.producer = self.producer, None
            if producer is not None:
                producer.client_lost()


class StreamBrokenOff(Exception):
    """Raised out of the ASGI application to make the server close a stream without its last chunk."""


async def _disconnected(receive, feeding) -> None:
    if feeding is not None and not await feeding:
        return  # the client went away while sending: the body's failure cut the exchange
    while (await receive())["type"] != "http.disconnect":
        pass


class _AsgiSource:
    """What a BodyStream pauses under ASGI: the task reading the request body waits while it is paused."""

    __slots__ = ("readable",)

    def __init__(self):
        self.readable = asyncio.Event()
        self.readable.set()

    def pause_reading(self) -> None:
        self.readable.clear()

    def resume_reading(self) -> None:
        self.readable.set()


async def _feed(receive, body: BodyStream, source: _AsgiSource, limit: int) -> bool:
    """Reads a request body under ASGI into `body` as it comes; False when the client went away."""
    size = 0
    while True:
        await source.readable.wait()
        message = await receive()
        if message["type"] == "http.disconnect":
            body.fail(ClientGone("the client went away while sending its body"))
            return False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            body.fail(BodyTooLarge(f"the body is larger than FERRY_GATEWAY_MAX_BODY_BYTES ({limit} bytes)"))
            return True
        body.feed(chunk)
        if not message.get("more_body"):
            body.finish()
            return True
