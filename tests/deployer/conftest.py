import pytest
import redis
from django.conf import settings

from contracts.keys import routes_key


@pytest.fixture
def routes():
    """The local cluster's routing table in the harness's Redis, empty before and after the test."""
    key = routes_key("local")
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    client.delete(key)
    yield client
    client.delete(key)
