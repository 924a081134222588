"""Waking the loop early, and telling the reconciler that an instance changed.

- `Waker`: a self-pipe. Signal handlers, probe threads and the Redis listener write a byte; the loop waits
  on the pipe with its poll interval as the timeout. A pipe, not a threading.Event, because setting an
  Event from a signal handler can deadlock on the Event's own lock.
- `RedisWakeListener`: the local driver publishes on AGENT_WAKE_CHANNEL after writing rows, so new desired state
  is acted on at once. Only a shortcut: polling alone reaches the same state, and Redis being down is
  logged, not fatal.
- `ReconcileNotifier`: enqueues `reconcile_service` from its own thread, so a slow or missing broker never
  stalls the loop; a service already waiting to be enqueued is not queued twice.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import threading

from contracts.keys import AGENT_WAKE_CHANNEL

logger = logging.getLogger("ferry.agent")

REDIS_RETRY_SECONDS = 5.0


class Waker:
    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def wake(self) -> None:
        try:
            os.write(self._write_fd, b"!")
        except (BlockingIOError, OSError):
            pass  # the pipe is full or closed: the loop is being woken anyway

    def wait(self, timeout: float) -> None:
        ready, _, _ = select.select([self._read_fd], [], [], timeout)
        if ready:
            try:
                while os.read(self._read_fd, 4096):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)


class RedisWakeListener(threading.Thread):
    def __init__(self, redis_url: str, on_message) -> None:
        super().__init__(name="ferry-agent-wake", daemon=True)
        self._redis_url = redis_url
        self._on_message = on_message
        self._stop_requested = threading.Event()

    def stop(self) -> None:
        self._stop_requested.set()

    def run(self) -> None:
        import redis

        complained = False
        while not self._stop_requested.is_set():
            try:
                self._listen(redis.Redis.from_url(self._redis_url, socket_connect_timeout=5))
            except (redis.RedisError, OSError) as exc:
                if not complained:
                    logger.warning("Could not listen on Redis channel %s (%s); polling only, retrying every %g s",
                                   AGENT_WAKE_CHANNEL, exc, REDIS_RETRY_SECONDS)
                    complained = True
                self._stop_requested.wait(REDIS_RETRY_SECONDS)

    def _listen(self, client) -> None:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(AGENT_WAKE_CHANNEL)
            while not self._stop_requested.is_set():
                if pubsub.get_message(timeout=1.0) is not None:
                    self._on_message()
        finally:
            pubsub.close()
            client.close()


class ReconcileNotifier(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="ferry-agent-notify", daemon=True)
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._waiting: set[int] = set()
        self._lock = threading.Lock()

    def notify(self, service_id: int) -> None:
        with self._lock:
            if service_id in self._waiting:
                return
            self._waiting.add(service_id)
        self._queue.put(service_id)

    def close(self, timeout: float = 3.0) -> None:
        """Sends what is queued (the last state changes matter most), waiting at most `timeout`."""
        self._queue.put(None)
        self.join(timeout)

    def run(self) -> None:
        while (service_id := self._queue.get()) is not None:
            with self._lock:
                self._waiting.discard(service_id)
            self._enqueue(service_id)

    @staticmethod
    def _enqueue(service_id: int) -> None:
        try:
            from deployer.tasks import reconcile_service

            reconcile_service.delay(service_id)
        except Exception as exc:  # noqa: BLE001 - the broker may be down; the beat sweep catches up later
            logger.warning("Could not enqueue a reconcile of service %s (%s)", service_id, exc)
