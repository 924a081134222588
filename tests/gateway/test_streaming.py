"""Streaming end to end through the real gateway process: answers relayed piece by piece (SSE, chunked,
close-delimited), to HTTP/1.1 and HTTP/1.0 clients, under the gateway's own server and under uvicorn; long
healthy streams never cut, silent ones cut by the idle limit; a client that leaves closes the instance's
connection, an instance that dies leaves the client an incomplete body; chunked request bodies forwarded as
they arrive, within the body limit. The instance is tests/gateway/streamer.py, which logs what it did; to show
that no event is held back it sends each one only after the client acknowledged the one before (lockstep), so
nothing depends on durations or on the machine's load."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import urllib.request
import uuid

import pytest
import redis

from tests.harness.process import free_port, spawn

from .conftest import HERE, REPO, Routes, start_gateway
from .test_metrics import flushed


class Streamer:
    def __init__(self, popen, port: int):
        self.popen = popen
        self.address = f"127.0.0.1:{port}"

    def log(self, stream_id: str) -> list:
        with urllib.request.urlopen(f"http://{self.address}/_log?id={stream_id}", timeout=5) as response:
            return json.loads(response.read())

    def ack(self, stream_id: str, n: int) -> None:
        with urllib.request.urlopen(f"http://{self.address}/_ack?id={stream_id}&n={n}", timeout=5) as response:
            response.read()

    def wait_log(self, stream_id: str, what: str, count: int = 1, timeout: float = 15.0) -> list:
        """The log once it holds `count` entries `what` (a deadline, not a pause)."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.log(stream_id)
            if sum(1 for entry in entries if entry[0] == what) >= count:
                return entries
            if time.monotonic() > deadline:
                raise AssertionError(f"the instance never logged {count} x {what!r} for {stream_id}: {entries}")
            time.sleep(0.02)


@pytest.fixture(scope="module")
def streamer(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("streamer") / "streamer.log"
    popen = spawn([sys.executable, str(HERE / "streamer.py"), str(port)], log=log, cwd=REPO,
                  death_signal=signal.SIGKILL)
    deadline = time.monotonic() + 15
    while not (log.exists() and "ready" in log.read_text()):
        if popen.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the streaming instance did not start:\n{log.read_text() if log.exists() else ''}")
        time.sleep(0.02)
    yield Streamer(popen, port)
    popen.kill()
    popen.wait()


@pytest.fixture(scope="module")
def strict_gateway(tmp_path_factory):
    """A gateway with a short idle limit and a small body limit."""
    running = start_gateway(tmp_path_factory.mktemp("strict"), FERRY_GATEWAY_STREAM_IDLE_TIMEOUT="1.5",
                            FERRY_GATEWAY_MAX_BODY_BYTES="4096")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def asgi_gateway(tmp_path_factory):
    running = start_gateway(tmp_path_factory.mktemp("asgi"), args=("--server", "uvicorn"))
    yield running
    running.stop()


@pytest.fixture
def service(streamer):
    """Routes a new service to the streamer on a gateway, `service(gateway, timeout_ms=...)` -> its name; the
    routes are removed when the test ends, however it ends."""
    made: list[Routes] = []

    def route(gateway, timeout_ms: int = 5000) -> str:
        routes = Routes(gateway)
        made.append(routes)
        name = routes.unique("st")
        routes.put(name, [(1, 100, [{"name": "s0", "address": streamer.address}])], timeout_ms=timeout_ms)
        return name

    yield route
    for routes in made:
        routes.remove_all()


class Client:
    """A raw HTTP client that notes when each server-sent event arrived (monotonic clock), decoding chunked
    bodies itself so that an incomplete one shows (`complete` stays False)."""

    def __init__(self, port: int, request: bytes):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.sendall(request)
        self.buffer = b""
        self.status = 0
        self.headers: dict = {}
        self.complete = False
        self.raw = b""  # the body as the client got it (de-chunked)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def read_head(self) -> None:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise AssertionError(f"connection closed before the head: {self.buffer!r}")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.version, self.status = lines[0].split()[0], int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}

    def body_pieces(self):
        """Yields the body as it arrives; sets `complete` when it ended properly."""
        chunked = self.headers.get("transfer-encoding") == "chunked"
        while True:
            if not chunked:
                if self.buffer:
                    piece, self.buffer = self.buffer, b""
                    yield piece
                if not self._fill():
                    self.complete = "content-length" not in self.headers
                    return
                continue
            while b"\r\n" in self.buffer:
                size_line, rest = self.buffer.split(b"\r\n", 1)
                size = int(size_line, 16)
                if len(rest) < size + 2:
                    break
                self.buffer = rest[size + 2:]
                if size == 0:
                    self.complete = True
                    return
                yield rest[:size]
            if not self._fill():
                return

    def events(self):
        """(event data, arrival time) as each SSE event completes."""
        pending = b""
        for piece in self.body_pieces():
            self.raw += piece
            pending += piece
            while b"\n\n" in pending:
                event, pending = pending.split(b"\n\n", 1)
                yield event.decode(), time.monotonic()

    def close(self) -> None:
        self.sock.close()


def get(name: str, query: str, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    return (f"GET /api/predict/{name}/events?{query} {version}\r\nHost: gw\r\nAuthorization: token-of-{name}\r\n"
            f"{extra}\r\n").encode()


def sent_marks(streamer: Streamer, stream_id: str) -> dict[int, float]:
    return {n: at for what, n, at in streamer.log(stream_id) if what == "sent"}


def lockstep(client: Client, streamer: Streamer, stream_id: str) -> list[str]:
    """The events of a `lockstep` stream, each acknowledged to the instance once it arrived: the instance sends
    the next only then, so a relay that held an event back would stall the stream (logged "unacked")."""
    received = []
    for n, (data, _) in enumerate(client.events()):
        received.append(data)
        streamer.ack(stream_id, n)
    return received


def assert_each_event_arrived_before_the_next_was_sent(streamer, stream_id) -> None:
    log = streamer.log(stream_id)
    assert "unacked" not in [entry[0] for entry in log], log
    assert [entry[0] for entry in log][-1] == "finished"


def relayed_in_lockstep(port: int, streamer: Streamer, name: str, events: int, query: str = "",
                        version: str = "HTTP/1.1") -> Client:
    """A `lockstep` stream of `events` events through the gateway at `port`: all of them arrive, the body
    complete, each before the instance sent the next. The closed client is returned for checks of its head."""
    stream_id = new_id()
    client = Client(port, get(name, f"id={stream_id}&events={events}&lockstep=1{query}", version=version))
    client.read_head()
    received = lockstep(client, streamer, stream_id)
    client.close()
    assert received == [f"data: {n}" for n in range(events)] and client.complete
    assert_each_event_arrived_before_the_next_was_sent(streamer, stream_id)
    return client


def new_id() -> str:
    return uuid.uuid4().hex[:10]


def test_server_sent_events_reach_the_client_as_they_are_sent(gateway, streamer, service):
    name = service(gateway)
    client = relayed_in_lockstep(gateway.port, streamer, name, events=4)
    assert client.status == 200 and client.headers["content-type"] == "text/event-stream"
    assert client.headers["transfer-encoding"] == "chunked" and "content-length" not in client.headers
    assert client.headers["ferry-version"] == "1"


def test_chunked_and_close_delimited_answers_are_relayed_intact(gateway, streamer, service):
    name = service(gateway)
    sizes = [1, 70000, 3, 250000, 17]
    client = Client(gateway.port, get(name, f"id={new_id()}&sizes={','.join(map(str, sizes))}"))
    client.read_head()
    body = b"".join(client.body_pieces())
    client.close()
    assert client.complete and body == b"".join(bytes(i % 251 for i in range(size)) for size in sizes)

    # HTTP/1.0 at the instance (the body ends when it closes): relayed chunked, as it comes.
    client = relayed_in_lockstep(gateway.port, streamer, name, events=3, query="&framing=close")
    assert client.headers["transfer-encoding"] == "chunked"


def test_an_http_1_0_client_gets_the_stream_delimited_by_the_close(gateway, streamer, service):
    name = service(gateway)
    client = relayed_in_lockstep(gateway.port, streamer, name, events=3, version="HTTP/1.0")
    assert "transfer-encoding" not in client.headers and "content-length" not in client.headers
    assert client.headers["connection"] == "close"


def test_a_client_that_reads_slowly_holds_the_instance_back_instead_of_filling_the_gateway(
        gateway, streamer, service):
    # 48 MiB, far more than the socket buffers between the instance and the client hold: if the gateway kept
    # reading the instance while the client reads nothing, the instance would get it all out.
    name = service(gateway)
    stream_id, blocks = new_id(), 768
    client = Client(gateway.port, get(name, f"id={stream_id}&bulk={blocks}"))
    client.read_head()
    stuck, polls, deadline = None, 0, time.monotonic() + 30
    while polls < 5:  # the instance stays paused, writing nothing more, over several looks at its log
        last = streamer.wait_log(stream_id, "paused")[-1]
        assert last[0] != "finished", "the instance sent it all while the client read nothing"
        polls = polls + 1 if last[0] == "paused" and last == stuck else 0
        stuck = last
        assert time.monotonic() < deadline, "the instance never stopped sending"
        time.sleep(0.1)
    assert stuck[1] < blocks * 65536 // 2
    size = sum(len(piece) for piece in client.body_pieces())  # now it reads: the rest comes
    client.close()
    assert client.complete and size == blocks * 65536
    assert streamer.log(stream_id)[-1][0] == "finished"


def test_a_stream_longer_than_the_route_timeout_is_not_cut_while_it_moves(strict_gateway, streamer, service):
    # The route's timeout (1 s) bounds the wait for the head; the stream then lasts ~3 s, its gaps (0.5 s)
    # under the idle limit (1.5 s).
    name = service(strict_gateway, timeout_ms=1000)
    stream_id = new_id()
    client = Client(strict_gateway.port, get(name, f"id={stream_id}&events=7&gap=0.5"))
    client.read_head()
    received = list(client.events())
    client.close()
    assert len(received) == 7 and client.complete
    log = streamer.log(stream_id)
    sent = sent_marks(streamer, stream_id)
    assert sent[6] - sent[0] > 1.0  # it did outlast the route's timeout
    assert [entry[0] for entry in log][-1] == "finished"


def test_the_idle_limit_cuts_a_silent_stream_and_the_client_sees_it_incomplete(strict_gateway, streamer, service):
    name = service(strict_gateway)
    stream_id = new_id()
    client = Client(strict_gateway.port, get(name, f"id={stream_id}&events=5&gap=0.2&silent_after=2"))
    client.read_head()
    received = list(client.events())
    client.close()
    assert [data for data, _ in received] == ["data: 0", "data: 1"] and not client.complete
    streamer.wait_log(stream_id, "closed")  # the gateway closed the instance's connection


def test_a_client_that_leaves_closes_the_instances_connection(gateway, streamer, service):
    name = service(gateway)
    stream_id = new_id()
    client = Client(gateway.port, get(name, f"id={stream_id}&events=50&gap=0.3"))
    client.read_head()
    events = client.events()
    next(events), next(events)
    client.close()
    log = streamer.wait_log(stream_id, "closed")
    assert "finished" not in [entry[0] for entry in log]
    assert len(sent_marks(streamer, stream_id)) < 50
    deadline = time.monotonic() + 10
    counted = f'ferry_gateway_streams_cut_total{{service="{name}",version="1"}} 1.0'
    while counted not in (text := gateway.metrics()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counted in text
    assert f'ferry_gateway_requests_total{{code="499",service="{name}",version="1"}} 1.0' in text


def test_an_instance_that_dies_mid_stream_leaves_the_client_an_incomplete_body(gateway, service):
    name = service(gateway)
    client = Client(gateway.port, get(name, f"id={new_id()}&events=5&gap=0.1&die_after=2"))
    client.read_head()
    received = list(client.events())
    client.close()
    assert client.status == 200 and [data for data, _ in received] == ["data: 0", "data: 1"]
    assert not client.complete and b"HTTP/1.1" not in client.raw + client.buffer  # no second status line


def test_streams_are_counted_with_their_time_to_first_byte(gateway, service):
    name = service(gateway)
    for _ in range(2):
        client = Client(gateway.port, get(name, f"id={new_id()}&events=2&gap=0.05"))
        client.read_head()
        list(client.events())
        client.close()
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    # A stream is counted as a request when it ends, after its first byte: wait for both to be flushed.
    seconds = flushed(client, f"ferry:metrics:s:local:{name}:1:*", requests=2, field="requests")
    assert seconds["streams"] == 2 and seconds["ttfb_count"] == 2 and seconds["requests"] == 2
    assert 0 < seconds["ttfb_ms_sum"] <= seconds["latency_ms_sum"]
    assert seconds.get("streams_cut", 0) == 0
    text = gateway.metrics()
    assert f'ferry_gateway_streams_total{{service="{name}",version="1"}} 2.0' in text
    assert f'ferry_gateway_stream_first_byte_seconds_count{{service="{name}",version="1"}} 2.0' in text


def upload_head(name: str, stream_id: str) -> bytes:
    return (f"POST /api/predict/{name}/upload?id={stream_id} HTTP/1.1\r\nHost: gw\r\n"
            f"Authorization: token-of-{name}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def upload_piece_by_piece(gateway, streamer, name: str) -> None:
    stream_id = new_id()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=20) as sock:
        sock.sendall(upload_head(name, stream_id) + chunk(b"a" * 1000))
        streamer.wait_log(stream_id, "piece")  # the instance has the first piece: the last is not sent yet
        sock.sendall(chunk(b"b" * 2000))
        streamer.wait_log(stream_id, "piece", 2)
        sock.sendall(b"0\r\n\r\n")
        answer = b""
        while b"}" not in answer:
            answer += sock.recv(65536)
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and json.loads(body)["total"] == 3000


def test_a_chunked_request_body_reaches_the_instance_piece_by_piece(gateway, streamer, service):
    name = service(gateway)
    upload_piece_by_piece(gateway, streamer, name)


def test_a_streamed_body_over_the_limit_is_refused_and_cut(strict_gateway, streamer, service):
    name = service(strict_gateway)
    stream_id = new_id()
    with socket.create_connection(("127.0.0.1", strict_gateway.port), timeout=20) as sock:
        sock.sendall(upload_head(name, stream_id) + chunk(b"a" * 3000))
        streamer.wait_log(stream_id, "piece")
        sock.sendall(chunk(b"b" * 3000))  # 6,000 bytes: over FERRY_GATEWAY_MAX_BODY_BYTES (4,096)
        answer = b""
        while chunk_ := sock.recv(65536):
            answer += chunk_
    assert answer.startswith(b"HTTP/1.1 413") and b"FERRY_GATEWAY_MAX_BODY_BYTES" in answer
    log = streamer.wait_log(stream_id, "closed")  # the instance's connection was closed mid-body
    assert sum(n for what, n, _ in log if what == "piece") <= 4096


def test_the_asgi_entry_streams_too(asgi_gateway, streamer, service):
    name = service(asgi_gateway)
    client = relayed_in_lockstep(asgi_gateway.port, streamer, name, events=4)
    assert client.status == 200 and client.headers["transfer-encoding"] == "chunked"

    stream_id = new_id()
    client = Client(asgi_gateway.port, get(name, f"id={stream_id}&events=50&gap=0.3"))
    client.read_head()
    next(client.events())
    client.close()
    assert "finished" not in [entry[0] for entry in streamer.wait_log(stream_id, "closed")]

    client = Client(asgi_gateway.port, get(name, f"id={new_id()}&events=5&gap=0.1&die_after=2"))
    client.read_head()
    assert len(list(client.events())) == 2 and not client.complete
    client.close()

    upload_piece_by_piece(asgi_gateway, streamer, name)
