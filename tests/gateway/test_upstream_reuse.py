"""An idle pooled connection whose instance has just died is not reused: the gateway learns of the close on its
event loop's next turn, but a request taken in this turn would be written to a dead connection and fail once
sent (a POST is never retried then). `Pool.take` polls the socket first, so such a request goes elsewhere or
waits for the restarted instance instead of failing (the `instance` fault of bench/faults/run.py)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import pytest

from gateway.upstream import Pool
from tests.gateway.conftest import run_coroutine


@pytest.fixture
def instance():
    """A listening socket standing for an instance, and the connections it accepted (closed at the end)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    yield listener, accepted
    listener.close()
    for peer in accepted:
        peer.close()


async def idle_connection(listener: socket.socket):
    """A pool holding one idle connection to `listener`, released a loop turn ago."""
    pool = Pool("127.0.0.1", listener.getsockname()[1])
    connection = await pool.connect()
    pool.release(connection)
    await asyncio.sleep(0.05)
    return pool, connection


def test_a_connection_the_instance_reset_is_not_taken_even_before_the_loop_sees_it(instance):
    listener, accepted = instance

    async def scenario():
        pool, connection = await idle_connection(listener)
        assert not connection.stale()
        # As a killed process's sockets: reset. The loop does not turn before the next take.
        peer = accepted[0]
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        deadline = time.monotonic() + 5
        while not connection.stale():  # the reset reaches our socket (no loop turn needed)
            assert time.monotonic() < deadline, "the reset never reached the socket"
            time.sleep(0.001)
        assert not connection.closed  # the loop has not noticed yet
        return pool.take()

    assert run_coroutine(scenario()) is None


def test_a_healthy_idle_connection_is_reused(instance):
    listener, _ = instance

    async def scenario():
        pool, connection = await idle_connection(listener)
        return connection, pool.take()

    connection, taken = run_coroutine(scenario())
    assert taken is connection
