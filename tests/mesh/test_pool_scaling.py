"""A pool scales on the traffic of all its models (docs/mesh.md, Elasticity): the autoscaler loop against real
Redis and the database, the gateway's metrics written by hand for the models, time passed in."""

import pytest
import redis
from django.conf import settings

from contracts.keys import metrics_second_key
from deployer.autoscaling import AutoscalerLoop
from deployer.mesh.load import pool_seconds
from services.models import Project
from services.writes import service_create

pytestmark = pytest.mark.django_db
T0 = 1_900_000_000
POOL = {"name": "scaledpool", "processor": "sklearn", "metadata": {"type": "ModelPool", "instance": 1},
        "autoscaler": {"min": 1, "max": 4, "scaleStrategies": [{"metricName": "qps", "threshold": 10}]}}


@pytest.fixture
def metrics():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    for pattern in ("ferry:metrics:s:local:pm*", "ferry:metrics:s:local:scaledpool:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)


def make_pool_with_models(count: int):
    project = Project.objects.get(name="default")
    pool = service_create(actor=None, project=project, document=POOL)
    models = [service_create(actor=None, project=project,
                             document={"name": f"pm{index}", "model_path": f"/models/pm{index}",
                                       "metadata": {"pool": "scaledpool"}}) for index in range(count)]
    return pool, models


def traffic(client, service: str, seconds, requests: float) -> None:
    for second in seconds:
        client.hset(metrics_second_key("local", service, 1, second), mapping={"requests": requests})


def test_the_pools_load_is_the_sum_of_its_models(metrics):
    pool, _ = make_pool_with_models(3)
    traffic(metrics, "pm0", [T0 - 2, T0 - 1], 7)
    traffic(metrics, "pm2", [T0 - 1], 5)
    traffic(metrics, "scaledpool", [T0 - 1], 1000)  # the pool's own name takes no traffic of its models
    totals = pool_seconds(metrics, pool, [T0 - 2, T0 - 1])
    assert (totals[T0 - 2].requests, totals[T0 - 1].requests) == (7, 12)


def test_models_each_below_the_threshold_scale_their_pool_together(metrics):
    pool, _ = make_pool_with_models(4)
    for index in range(4):  # 8 req/s each: none alone would ask for a second instance, together 32 req/s
        traffic(metrics, f"pm{index}", range(T0 - 40, T0), 8)
    changes = AutoscalerLoop(metrics).tick(now=T0)
    pool.refresh_from_db()
    assert pool.autoscaled_instances == 4, changes
    assert "qps" in pool.events.get(reason="Scaled").message
