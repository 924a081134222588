"""A cron job above the autoscaler's max, end to end with every part real: `manage.py runautoscaler` decides,
a Celery worker reconciles, the node agent starts the model servers. The service runs the scheduled count
(docs/autoscaling.md: the schedule wins over max), the loop writes and announces that decision once, and
DescribeServiceCronScaler's job reports it."""

import json
import signal

import pytest
import redis
from django.conf import settings

from contracts.scaling_records import CRON_JOBS_KEY, DECISION_KEY, SERIES_KEY, cron_jobs_read
from processors.demo import demo_service_files
from services.models import Project, Service
from services.writes import cron_scaler_set, service_create
from tests.agent.kit import wait_for
from tests.harness.process import stop

from .control_plane import start_autoscaler, start_worker

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
EVERY_DAY = {"Name": "all_day", "Schedule": "0 0 0 * * *", "TargetSize": 2, "TimeZone": "UTC"}
TICKS_AFTER = 5


def fresh(service: Service) -> Service:
    return Service.objects.get(pk=service.pk)


def ready_instances(service: Service) -> int:
    return service.instances.filter(ready=True).count()


def test_a_cron_target_above_max_runs_its_instances_and_is_decided_once(local_cluster, demo_models, tmp_path):
    client = redis.Redis.from_url(settings.REDIS_URL)
    document = next(f for f in demo_service_files(demo_models) if f["name"] == "demo_iris")
    document = document | {"autoscaler": {"min": 1, "max": 1, "scaleStrategies": [
        {"metricName": "qps", "threshold": 1000}]}}
    iris = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
    cron_scaler_set(actor=None, service=iris, scale_jobs=[EVERY_DAY], exclude_dates=[])
    worker = start_worker(local_cluster, tmp_path)
    autoscaler = start_autoscaler(local_cluster, tmp_path)
    try:
        wait_for(lambda: ready_instances(iris) == 2, timeout=120, what="the cron job's 2 instances (max is 1)")
        scaled_at = json.loads(client.get(DECISION_KEY.format(cluster="local", service="demo_iris")))["time"]
        # Let the loop decide again several times with the count in effect: it must not write it again.
        wait_for(lambda: json.loads(client.get(DECISION_KEY.format(cluster="local", service="demo_iris")))["time"]
                 >= scaled_at + 2 * TICKS_AFTER, timeout=60, what=f"{TICKS_AFTER} more ticks of the loop")
    finally:
        stop(autoscaler, signal.SIGTERM)
        stop(worker, signal.SIGTERM)
    iris = fresh(iris)
    scaled = list(iris.events.filter(reason="Scaled").values_list("message", flat=True))
    assert len(scaled) == 1 and "1 -> 2" in scaled[0], scaled
    assert iris.autoscaled_instances == 2 and ready_instances(iris) == 2
    job = cron_jobs_read(client, "local", "demo_iris")["all_day"]
    assert job["State"] == "Succeed" and "instances 1 -> 2" in job["Message"], job
    client.delete(*(key.format(cluster="local", service="demo_iris")
                    for key in (DECISION_KEY, SERIES_KEY, CRON_JOBS_KEY)))
    log = (tmp_path / "autoscaler.log").read_text()
    assert "Traceback" not in log, log[-3000:]
