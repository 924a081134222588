"""Asking the control plane for instances at once when a request finds a service at zero.

The gateway enqueues the Celery task `deployer.activate_service(service_name, cluster_name)` itself: one LPUSH
of a message in Celery's protocol 2, exactly what `Celery.send_task` puts on the Redis broker, without
importing Celery (which would cost the gateway ~40 MB and a slower start). At most one message per service per
second; each expires after 60 s, so a worker that was down does not wake services long after the fact.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone

logger = logging.getLogger("ferry.gateway")
TASK = "deployer.activate_service"
MIN_INTERVAL = 1.0
EXPIRES = 60


def celery_message(task: str, args: list, queue: str, expires_in: float = EXPIRES) -> bytes:
    """A Celery protocol-2 message as kombu's Redis transport stores it on the queue's list."""
    task_id = str(uuid.uuid4())
    expires = (datetime.now(timezone.utc) + timedelta(seconds=expires_in)).isoformat()
    body = json.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    message = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": expires,
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
            "parent_id": None, "argsrepr": repr(args), "kwargsrepr": "{}",
            "origin": f"gen{os.getpid()}@{socket.gethostname()}", "ignore_result": True,
            "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
        },
        "properties": {
            "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(message).encode()


class Activator:
    def __init__(self, redis, queue: str, counters):
        self.redis = redis
        self.queue = queue
        self.counters = counters
        self.tasks: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones

    def signal(self, state, route) -> None:
        """Called on the request path: at most one message per service per second, sent in the background."""
        now = time.monotonic()
        if now - state.last_activation < MIN_INTERVAL:
            return
        state.last_activation = now
        self.counters.activations[route.name] = self.counters.activations.get(route.name, 0) + 1
        task = asyncio.get_running_loop().create_task(self._send(route.name, route.cluster))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, service: str, cluster: str) -> None:
        try:
            await self.redis.lpush(self.queue, celery_message(TASK, [service, cluster], self.queue))
            logger.info("asked the control plane to activate %s (cluster %s)", service, cluster)
        except Exception as error:  # noqa: BLE001 -- the next waiting request asks again a second later
            logger.warning("could not ask for the activation of %s: %s", service, error)
