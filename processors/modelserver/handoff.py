"""The channel between the node agent's warm pool and a standby model server (standard library only: the
agent imports this module, and must not pay for kserve).

The agent starts a standby with one end of a `socketpair(AF_UNIX, SOCK_SEQPACKET)` as its stdin. SEQPACKET
keeps message boundaries (one `send` is one `recv`), carries file descriptors (SCM_RIGHTS), and reads as end
of file once the other side is gone, so a standby whose agent died exits by itself. Messages are JSON objects:

    standby -> agent   {"type": "ready", "pid": 123, "imports_seconds": 2.1}     imports done, waiting
    agent -> standby   {"type": "assign", "name", "argv", "env", "cwd", "sent_at"} + the instance log's fd
    standby -> agent   {"type": "assigned", "pid": 123}                          it is that instance now

`argv` is exactly the command a normal start would run (`[python, -m, processors.modelserver, ...]`), `env`
exactly its environment. See docs/processors.md (Standby mode) and docs/node-agent.md (Warm pool).
"""

from __future__ import annotations

import json
import os
import socket

STANDBY_FLAG = "--standby"
# Standbys carry this mark (not FERRY_AGENT_VAR_DIR) in their environment: the agent recognises an earlier
# agent's standbys after a restart, and they are not mistaken for instances before they become one.
POOL_MARK = "FERRY_WARM_POOL_VAR_DIR"
MAX_MESSAGE_BYTES = 1 << 20  # an argv and an environment; far below the socket buffer SEQPACKET allows


class ChannelClosed(Exception):
    """The other side closed the channel (or died)."""


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(agent's end, standby's end). Both are non-inheritable; the caller passes the standby's end as stdin."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(channel: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(channel, [data], fds)
    else:
        channel.send(data)


def receive(channel: socket.socket) -> tuple[dict, list[int]]:
    """One message and the descriptors that came with it; ChannelClosed at end of file.

    Raises BlockingIOError (non-blocking channel, nothing there) or TimeoutError (timeout set) as the socket does.
    """
    data, fds, _flags, _address = socket.recv_fds(channel, MAX_MESSAGE_BYTES, 4)
    if not data:
        for fd in fds:
            _close_quietly(fd)
        raise ChannelClosed("the other side closed the channel")
    try:
        message = json.loads(data)
    except ValueError as error:
        for fd in fds:
            _close_quietly(fd)
        raise ChannelClosed(f"unreadable message on the channel: {error}") from None
    if not isinstance(message, dict):
        raise ChannelClosed("unreadable message on the channel: not a JSON object")
    return message, fds


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
