"""The autoscaler loop against real Redis and the database, with the gateway's metrics written by hand and
time passed in (`tick(now=...)`), so minutes of behaviour take milliseconds."""

import pytest
import redis
from django.conf import settings

from contracts.scaling_records import DECISION_KEY
from deployer.autoscaling import AutoscalerLoop
from contracts.keys import metrics_second_key
from services.models import Project, Service
from services.writes import cron_scaler_set, service_create

pytestmark = pytest.mark.django_db
T0 = 1_900_000_000  # a fixed "now", in seconds
SLEEPER = {"name": "scaled", "processor": "custom",
           "containers": [{"image": "none", "script": "sleep 600", "port": 8000}]}


@pytest.fixture
def metrics():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    for key in client.scan_iter("ferry:metrics:s:local:scaled:*"):
        client.delete(key)
    client.delete(DECISION_KEY.format(cluster="local", service="scaled"))


def create(autoscaler=None) -> Service:
    document = dict(SLEEPER, **({"autoscaler": autoscaler} if autoscaler else {}))
    return service_create(actor=None, project=Project.objects.get(name="default"), document=document)


def traffic(client, seconds, *, requests=0.0, latency_ms_sum=0.0):
    for second in seconds:
        client.hset(metrics_second_key("local", "scaled", 1, second), mapping={"requests": requests, "latency_ms_sum": latency_ms_sum})


def test_it_scales_up_on_qps_and_says_why(metrics):
    service = create({"min": 1, "max": 5, "scaleStrategies": [{"metricName": "qps", "threshold": 10}]})
    loop = AutoscalerLoop(metrics)
    traffic(metrics, range(T0 - 40, T0), requests=50)
    changes = loop.tick(now=T0)
    service.refresh_from_db()
    assert service.autoscaled_instances == 5
    assert changes and "1 -> 5" in changes[0]
    event = service.events.get(reason="Scaled")
    assert "qps" in event.message
    assert b'"desired": 5' in metrics.get(DECISION_KEY.format(cluster="local", service="scaled"))


def test_it_scales_a_kpa_service_on_concurrency_within_max(metrics):
    service = create({"min": 1, "max": 4, "kpa": {"autoscaling.knative.dev/target": "10"}})
    loop = AutoscalerLoop(metrics)
    # 30 s of 50 requests in flight on average (50,000 ms of request time per second).
    traffic(metrics, range(T0 - 70, T0), requests=100, latency_ms_sum=50_000)
    loop.tick(now=T0)
    service.refresh_from_db()
    assert service.autoscaled_instances == 4  # wants ceil(50 / 7) = 8, capped at max 4


def test_it_scales_an_idle_service_with_min_zero_to_zero_after_the_grace(metrics):
    service = create({"min": 0, "max": 3, "scaleStrategies": [{"metricName": "qps", "threshold": 10}],
                      "behavior": {"onZero": {"scaleDownGracePeriodSeconds": 60}}})
    loop = AutoscalerLoop(metrics)
    traffic(metrics, range(T0 - 10, T0), requests=5)
    loop.tick(now=T0)
    service.refresh_from_db()
    assert service.autoscaled_instances in (None, 1)
    loop.tick(now=T0 + 30)  # idle, but within the grace
    service.refresh_from_db()
    assert service.autoscaled_instances in (None, 1)
    loop.tick(now=T0 + 75)
    service.refresh_from_db()
    assert service.autoscaled_instances == 0


def test_it_applies_a_cron_floor_to_a_fixed_size_service(metrics):
    service = create()
    cron_scaler_set(actor=None, service=service, exclude_dates=[],
                    scale_jobs=[{"Name": "all_day", "Schedule": "0 0 0 * * *", "TargetSize": 3, "TimeZone": "UTC"}])
    AutoscalerLoop(metrics).tick(now=T0)
    service.refresh_from_db()
    assert service.autoscaled_instances == 3
    assert "cron" in service.events.get(reason="Scaled").message
    from services.scale import effective_instance_count
    assert effective_instance_count(instance_count=1, autoscaler=None, autoscaled=3) == 3

    from services.writes import cron_scaler_delete
    cron_scaler_delete(actor=None, service=service)
    service.refresh_from_db()
    assert service.autoscaled_instances is None


def test_it_does_not_undo_an_activation_before_the_woken_request_reaches_the_metrics(metrics):
    from deployer.activation import activate

    service = create({"min": 0, "max": 3, "kpa": {"autoscaling.knative.dev/window": "6s"}})
    loop = AutoscalerLoop(metrics)
    # It ran, then went to zero (a new service's first start is held apart: see the test below).
    Service.objects.filter(pk=service.pk).update(autoscaled_instances=0, phase="Running")
    loop.tick(now=T0)  # at zero, idle: stays there
    service.refresh_from_db()
    assert service.autoscaled_instances == 0

    assert activate(service.name, "local")  # a request waits in the gateway's activator
    for now in (T0 + 2, T0 + 4, T0 + 20):  # no metrics yet: the instance is still starting
        loop.tick(now=now)
        service.refresh_from_db()
        assert service.autoscaled_instances == 1, now
    assert not service.events.filter(reason="Scaled").exists()
    loop.tick(now=T0 + 40)  # the grace period (30 s) passed with no request served
    service.refresh_from_db()
    assert service.autoscaled_instances == 0


def test_a_restarted_loop_does_not_wake_a_service_at_zero(metrics):
    service = create({"min": 0, "max": 3, "kpa": {}})
    Service.objects.filter(pk=service.pk).update(autoscaled_instances=0)
    AutoscalerLoop(metrics).tick(now=T0)
    AutoscalerLoop(metrics).tick(now=T0 + 2)  # a fresh loop, as after a restart
    service.refresh_from_db()
    assert service.autoscaled_instances == 0


def test_an_instance_still_starting_is_not_sent_back_to_zero(metrics):
    """As Knative holds a revision at its initial scale until it is ready: a service at min 0 whose instance is
    still starting (an engine loading for minutes, say) stays at 1 however idle, and goes to zero once its
    instance was ready and the grace passed."""
    from services.models import Instance

    service = create({"min": 0, "max": 3, "scaleStrategies": [{"metricName": "qps", "threshold": 10}],
                      "behavior": {"onZero": {"scaleDownGracePeriodSeconds": 60}}})
    starting = Instance.objects.create(service=service, version=service.versions.get(), name="scaled-v1-0",
                                       state="Starting", ready=False)
    loop = AutoscalerLoop(metrics)
    for now in (T0, T0 + 75, T0 + 300):
        loop.tick(now=now)
        service.refresh_from_db()
        assert service.autoscaled_instances in (None, 1), now
    assert "until an instance is ready" in metrics.get(DECISION_KEY.format(cluster="local", service="scaled")).decode()
    Instance.objects.filter(pk=starting.pk).update(state="Running", ready=True)
    loop.tick(now=T0 + 400)
    service.refresh_from_db()
    assert service.autoscaled_instances == 0
