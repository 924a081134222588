"""The local driver publishes on ferry:agent:wake after writing rows: the agent acts without waiting a poll."""

import pytest
import redis
from django.conf import settings

from tests.agent.kit import HTTP_SERVER, wait_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

CHANNEL = "ferry:agent:wake"


def test_it_starts_an_instance_at_once_when_woken_through_redis(cluster):
    agent = cluster.start_agent(poll_interval=60)
    wait_for(lambda: "Started the node agent" in agent.output(), what="the agent's first pass")
    client = redis.Redis.from_url(settings.REDIS_URL)
    wait_for(lambda: dict(client.pubsub_numsub(CHANNEL)).get(CHANNEL.encode()), what="the agent to subscribe")

    cluster.add("svc-v1-0", HTTP_SERVER)
    client.publish(CHANNEL, "1")
    # Well within the 60 s poll interval: only the wake-up can explain it.
    cluster.wait_for_row("svc-v1-0", lambda row: row.pid is not None, timeout=10, what="a start after the wake-up")
    cluster.wait_running("svc-v1-0", timeout=10)
