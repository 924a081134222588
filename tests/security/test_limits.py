"""Limits one project cannot push past to hurt the others: a broken cron schedule fails only its own service (the
autoscaler loop's tick run directly on real rows and real Redis), schedules that never fire are refused when
written, instance counts are bounded per service (FERRY_MAX_INSTANCES_PER_SERVICE) and per project (quotas),
through the real API, with nothing changed by a refusal."""

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from deployer.autoscaling import AutoscalerLoop
from contracts.keys import metrics_second_key
from services.models import Cluster, ClusterGrant, Project, ProjectMembership, Service
from services.writes import api_token_create, cron_scaler_set, service_create

pytestmark = pytest.mark.django_db
T0 = 1_900_000_000
BROKEN_SCHEDULE = "0 0 0 31 2 *"  # 31 February: valid to croniter, and never comes


def sleeper(name: str, **extra) -> dict:
    return {"name": name, "processor": "custom", "containers": [{"image": "none", "script": "sleep 600",
                                                                  "port": 8000}], **extra}


@pytest.fixture
def metrics():
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    yield client
    for pattern in ("ferry:metrics:s:local:limits_*", "ferry:autoscaler:*limits_*"):
        for key in client.scan_iter(pattern):
            client.delete(key)


# -- the broken cron schedule ------------------------------------------------------------------------------------


def test_a_broken_cron_schedule_fails_its_own_service_and_the_loop_goes_on(metrics):
    project = Project.objects.get(name="default")
    broken = service_create(actor=None, project=project, document=sleeper("limits_broken"))
    # Stored as a service made before write-time validation would have it (the API now refuses it).
    Service.objects.filter(pk=broken.pk).update(cron_scaler={"ScaleJobs": [
        {"Name": "never", "Schedule": BROKEN_SCHEDULE, "TargetSize": 3}], "ExcludeDates": []})
    scaled = service_create(actor=None, project=project, document=sleeper(
        "limits_scaled", autoscaler={"min": 1, "max": 5, "scaleStrategies": [{"metricName": "qps", "threshold": 10}]}))
    cron = service_create(actor=None, project=project, document=sleeper("limits_cron"))
    cron_scaler_set(actor=None, service=cron, exclude_dates=[],
                    scale_jobs=[{"Name": "daily", "Schedule": "0 0 0 * * *", "TargetSize": 2, "TimeZone": "UTC"}])
    for second in range(T0 - 40, T0):
        metrics.hset(metrics_second_key("local", "limits_scaled", 1, second), mapping={"requests": 50, "latency_ms_sum": 0})

    loop = AutoscalerLoop(metrics)
    loop.tick(now=T0)
    loop.tick(now=T0 + 2)

    scaled.refresh_from_db()
    cron.refresh_from_db()
    broken.refresh_from_db()
    assert scaled.autoscaled_instances == 5  # metric scaling went on
    assert cron.autoscaled_instances == 2  # and another service's cron scaling
    assert broken.autoscaled_instances is None  # the broken one changed nothing
    condition = next(c for c in broken.conditions if c["type"] == "ScalingActive")
    assert condition["status"] == "False" and "cron" in condition["message"]
    assert broken.events.filter(reason="ScalingFailed", type="Warning").count() == 1  # once, not every tick
    assert not any(c["type"] == "ScalingActive" for c in scaled.conditions)

    # Fixed, it scales again and the condition says so.
    Service.objects.filter(pk=broken.pk).update(cron_scaler={"ScaleJobs": [
        {"Name": "daily", "Schedule": "0 0 0 * * *", "TargetSize": 3}], "ExcludeDates": []})
    loop.tick(now=T0 + 4)
    broken.refresh_from_db()
    assert broken.autoscaled_instances == 3
    assert next(c for c in broken.conditions if c["type"] == "ScalingActive")["status"] == "True"


# -- refusals through the API -------------------------------------------------------------------------------------


def member(username: str, project: str, role: str = "developer") -> APIClient:
    user = get_user_model().objects.create_user(username, password="unused")
    project_row, _ = Project.objects.get_or_create(name=project)
    ProjectMembership.objects.create(user=user, project=project_row, role=role)
    ClusterGrant.objects.get_or_create(project=project_row, cluster=Cluster.objects.get(name="local"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, name='t')[1]}")
    return client


def snapshot(name: str) -> tuple:
    service = Service.objects.filter(name=name).first()
    if service is None:
        return (None,)
    return (service.generation, service.instance_count, service.autoscaler, service.cron_scaler, service.spec,
            service.versions.count())


def cron_body(schedule: str, size: int = 2) -> dict:
    return {"ScaleJobs": [{"Name": "job", "Schedule": schedule, "TargetSize": size}]}


# (name, method, path, body, the field the error must name)
API_ATTEMPTS = [
    ("cron_never_fires", "post", "cronscaler", cron_body(BROKEN_SCHEDULE), "ScaleJobs[0].Schedule"),
    ("cron_target_above_platform_max", "post", "cronscaler", cron_body("0 0 0 * * *", 1001), "ScaleJobs[0].TargetSize"),
    ("scale_above_platform_max", "put", "", {"metadata": {"instance": 1001}}, "metadata.instance"),
    ("autoscaler_max_above_platform_max", "post", "autoscaler",
     {"min": 1, "max": 100_000, "scaleStrategies": [{"metricName": "qps", "threshold": 10}]}, "autoscaler.max"),
    ("scale_above_project_quota", "put", "", {"metadata": {"instance": 6}}, "metadata.instance"),
    ("autoscaler_above_project_quota", "post", "autoscaler",
     {"min": 1, "max": 6, "scaleStrategies": [{"metricName": "qps", "threshold": 10}]}, "autoscaler.max"),
    ("cron_above_project_quota", "post", "cronscaler", cron_body("0 0 0 * * *", 6), "ScaleJobs[0].TargetSize"),
    ("cpu_above_project_quota", "put", "", {"metadata": {"instance": 2, "cpu": 4}}, "metadata.cpu"),
    ("memory_above_project_quota", "put", "", {"metadata": {"instance": 2, "memory": 8192}}, "metadata.memory"),
]


@pytest.fixture
def quota_project():
    client = member("quota_dev", "quota_team")
    Project.objects.filter(name="quota_team").update(max_instances=5, max_cpu=4, max_memory_mb=8192)
    response = client.post("/api/v2/services", sleeper("limits_quota", metadata={"instance": 2, "cpu": 1,
                                                                                 "memory": 1024}), format="json")
    assert response.status_code in (200, 202), response.content
    return client


@pytest.mark.parametrize(("name", "method", "path", "body", "field"), API_ATTEMPTS, ids=[a[0] for a in API_ATTEMPTS])
def test_a_scaling_write_past_a_bound_or_quota_is_refused_and_changes_nothing(name, method, path, body, field,
                                                                              quota_project):
    before = snapshot("limits_quota")
    url = "/api/v2/services/local/limits_quota" + (f"/{path}" if path else "")
    response = getattr(quota_project, method)(url, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["Message"], response.json()
    assert snapshot("limits_quota") == before


def test_a_second_service_past_the_project_quota_is_refused_and_not_created(quota_project):
    response = quota_project.post("/api/v2/services", sleeper("limits_second", metadata={"instance": 4}),
                                  format="json")
    assert response.status_code == 400, response.content
    assert "metadata.instance" in response.json()["Message"] and "quota" in response.json()["Message"]
    assert snapshot("limits_second") == (None,)


def test_within_the_quota_a_write_goes_through(quota_project):
    response = quota_project.put("/api/v2/services/local/limits_quota", {"metadata": {"instance": 4}}, format="json")
    assert response.status_code in (200, 202), response.content
    assert Service.objects.get(name="limits_quota").instance_count == 4


def test_the_autoscaler_never_decides_above_the_project_quota(metrics):
    project = Project.objects.create(name="capped_team", max_instances=3)
    ClusterGrant.objects.create(project=project, cluster=Cluster.objects.get(name="local"))
    scaled = service_create(actor=None, project=project, document=sleeper(
        "limits_capped", autoscaler={"min": 1, "max": 3, "scaleStrategies": [{"metricName": "qps", "threshold": 10}]}))
    service_create(actor=None, project=project, document=sleeper("limits_other", metadata={"instance": 0}))
    # An admin lowers the quota after the services were made: the loop holds within it.
    Project.objects.filter(pk=project.pk).update(max_instances=2)
    for second in range(T0 - 40, T0):
        metrics.hset(metrics_second_key("local", "limits_capped", 1, second), mapping={"requests": 500, "latency_ms_sum": 0})
    AutoscalerLoop(metrics).tick(now=T0)
    scaled.refresh_from_db()
    assert scaled.autoscaled_instances == 2
    assert "quota" in scaled.events.get(reason="Scaled").message


ATTEMPTS = (["cron:broken_schedule_stops_the_loop"] + [f"api:{a[0]}" for a in API_ATTEMPTS]
            + ["api:second_service_past_quota", "autoscaler:decides_above_quota"])
