"""The autoscaler loop does what its settings say, and says it once: a cron TargetSize above the autoscaler's
max runs that many instances (docs/autoscaling.md), a decision is written and announced once rather than at
every tick, and what each cron job did is recorded for DescribeServiceCronScaler. Real Redis and database; time
is passed in (`tick(now=...)`); each write's reconcile runs inline (no agent: the local driver's work list shows
how many instances the reconciler asked for)."""

from datetime import UTC, datetime

import pytest
import redis
from django.conf import settings

from deployer.autoscaling import AutoscalerLoop
from contracts.scaling_records import CRON_JOBS_KEY, DECISION_KEY, SERIES_KEY, cron_jobs_read
from services.models import Project, Service
from services.writes import cron_scaler_set, service_create

pytestmark = pytest.mark.django_db
T0 = 1_900_000_000  # 2030-03-17 17:46:40 UTC
NAME = "fidelity"
SLEEPER = {"name": NAME, "processor": "custom",
           "containers": [{"image": "none", "script": "sleep 600", "port": 8000}]}
AT_MIDNIGHT = {"Name": "all_day", "Schedule": "0 0 0 * * *", "TargetSize": 5, "TimeZone": "UTC"}


@pytest.fixture
def client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    for key in (DECISION_KEY, SERIES_KEY, CRON_JOBS_KEY):
        client.delete(key.format(cluster="local", service=NAME))


def create(autoscaler=None) -> Service:
    document = dict(SLEEPER, **({"autoscaler": autoscaler} if autoscaler else {}))
    return service_create(actor=None, project=Project.objects.get(name="default"), document=document)


def asked_for(service: Service) -> int:
    return service.local_instances.filter(desired="running").count()


def ticks(loop: AutoscalerLoop, count: int, start: int = T0) -> None:
    for index in range(count):
        loop.tick(now=start + 2 * index)


def test_a_cron_target_above_max_runs_that_many_and_is_written_once(client):
    service = create({"min": 1, "max": 3, "scaleStrategies": [{"metricName": "qps", "threshold": 10}]})
    cron_scaler_set(actor=None, service=service, scale_jobs=[AT_MIDNIGHT], exclude_dates=[])
    ticks(AutoscalerLoop(client), 10)
    service.refresh_from_db()
    assert service.autoscaled_instances == 5
    assert asked_for(service) == 5  # the schedule wins over max, as docs/autoscaling.md says
    scaled = list(service.events.filter(reason="Scaled").values_list("message", flat=True))
    assert len(scaled) == 1 and "1 -> 5" in scaled[0] and "above max 3" in scaled[0], scaled
    assert not service.events.filter(reason="ScaleNotApplied").exists()

    job = cron_jobs_read(client, "local", NAME)["all_day"]
    assert job["State"] == "Succeed" and "instances 1 -> 5" in job["Message"]
    assert job["RanAt"] == "2030-03-17T00:00:00+00:00"
    assert job["EvaluatedAt"] == datetime.fromtimestamp(T0 + 18, UTC).isoformat()  # the last tick


def test_the_range_returns_to_max_when_a_later_job_lowers_the_floor(client):
    service = create({"min": 1, "max": 3, "scaleStrategies": [{"metricName": "qps", "threshold": 10}],
                      "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}})
    evening = {"Name": "evening", "Schedule": "0 0 18 * * *", "TargetSize": 1, "TimeZone": "UTC"}
    cron_scaler_set(actor=None, service=service, scale_jobs=[AT_MIDNIGHT, evening], exclude_dates=[])
    loop = AutoscalerLoop(client)
    ticks(loop, 2)
    assert asked_for(Service.objects.get(pk=service.pk)) == 5
    ticks(loop, 2, start=T0 + 14 * 60)  # 18:00:40 UTC: the evening job ran
    service.refresh_from_db()
    assert service.autoscaled_instances == 1 and asked_for(service) == 1
    jobs = cron_jobs_read(client, "local", NAME)
    assert jobs["evening"]["State"] == "Succeed" and "instances 5 -> 1" in jobs["evening"]["Message"]
    assert jobs["all_day"]["State"] == "Succeed" and "instances 1 -> 5" in jobs["all_day"]["Message"]


def test_a_decision_the_service_cannot_take_is_reported_once_and_never_rewritten(client):
    # An autoscaler recorded without `min` (before the schema required it): the KPA may decide 0, which the
    # service's range (min 1 by default) cannot take.
    service = create({"min": 0, "max": 3, "kpa": {"autoscaling.knative.dev/window": "6s"}})
    Service.objects.filter(pk=service.pk).update(
        autoscaler={"max": 3, "kpa": {"autoscaling.knative.dev/window": "6s"}}, autoscaled_instances=1)
    ticks(AutoscalerLoop(client), 40)  # 80 s without a request: the KPA wants zero after its grace period
    service.refresh_from_db()
    assert service.autoscaled_instances == 1
    assert service.events.filter(reason="ScaleNotApplied", type="Warning").count() == 1
    assert not service.events.filter(reason="Scaled").exists()


def test_a_failed_wake_up_fails_the_cron_job_in_effect(client):
    service = create()
    cron_scaler_set(actor=None, service=service, scale_jobs=[AT_MIDNIGHT], exclude_dates=[])
    service.refresh_from_db()
    Service.objects.filter(pk=service.pk).update(
        activation={"since": "2030-03-17T17:00:00+00:00", "generation": service.generation, "failed": True,
                    "message": "no instance became ready"})
    AutoscalerLoop(client).tick(now=T0)
    job = cron_jobs_read(client, "local", NAME)["all_day"]
    assert job["State"] == "Failed" and "held at zero after a failed wake-up" in job["Message"]
