"""The server side of a WebSocket (RFC 6455), as much as EAS's queue `watch` needs: the handshake, binary frames
out, and, in, pings (answered), a close, and data frames (dropped: a watcher only reads). gateway/server.py hands
the connection over (HttpProtocol.take_over) after the handler accepted the upgrade."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def handshake(key: bytes) -> bytes:
    accept = base64.b64encode(hashlib.sha1(key.strip() + _GUID).digest())  # noqa: S324 -- the RFC's choice
    return (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-accept: " + accept + b"\r\n\r\n")


def encode(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


class WebSocket:
    """One accepted connection: `send(bytes)` a binary frame; `closed` is set when the client closes or goes."""

    def __init__(self, transport):
        self.transport = transport
        self.buffer = b""
        self.closed = asyncio.Event()

    def send(self, payload: bytes) -> None:
        if not self.closed.is_set():
            self.transport.write(encode(0x2, payload))

    def close(self) -> None:
        if not self.closed.is_set():
            self.transport.write(encode(0x8, struct.pack("!H", 1000)))
            self.closed.set()
        self.transport.close()

    # called by gateway/server.py's protocol
    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            frame = self._next_frame()
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 0x9:  # ping: pong with its payload
                self.transport.write(encode(0xA, payload))
            elif opcode == 0x8:
                self.close()
                return

    def connection_lost(self) -> None:
        self.closed.set()

    def _next_frame(self):
        buffer = self.buffer
        if len(buffer) < 2:
            return None
        opcode, size = buffer[0] & 0x0F, buffer[1] & 0x7F
        masked = buffer[1] & 0x80
        at = 2
        if size == 126:
            if len(buffer) < 4:
                return None
            size, at = struct.unpack("!H", buffer[2:4])[0], 4
        elif size == 127:
            if len(buffer) < 10:
                return None
            size, at = struct.unpack("!Q", buffer[2:10])[0], 10
        mask = b""
        if masked:
            mask, at = buffer[at:at + 4], at + 4
        if len(buffer) < at + size:
            return None
        payload = buffer[at:at + size]
        if masked:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.buffer = buffer[at + size:]
        return opcode, payload
