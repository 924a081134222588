"""Scaling settings read back as what happened, and settings nothing would act on refused, through the official
EAS SDK: DescribeServiceAutoScaler's CurrentMetrics and DescribeServiceCronScaler's job State / LastProbeTime /
Message come from the autoscaler loop (run here a tick at a time, with the gateway's metrics written into Redis
as the gateway writes them)."""

import json

import pytest
import redis
from alibabacloud_eas20210701 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException
from django.conf import settings

from deployer.autoscaling import AutoscalerLoop
from contracts.keys import metrics_second_key
from contracts.scaling_records import CRON_JOBS_KEY, DECISION_KEY, SERIES_KEY
from services.models import Cluster, ClusterGrant, Project, Service

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
T0 = 1_900_000_000  # 2030-03-17 17:46:40 UTC
NAME = "scaled_sdk"
SLEEPER = {"name": NAME, "processor": "custom", "metadata": {"instance": 1},
           "containers": [{"image": "none", "script": "sleep 600", "port": 8000}]}
QPS_10 = [m.CreateServiceAutoScalerRequestScaleStrategies(metric_name="qps", threshold=10)]


@pytest.fixture
def client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    for key in (DECISION_KEY, SERIES_KEY, CRON_JOBS_KEY):
        client.delete(key.format(cluster="local", service=NAME))
    for key in client.scan_iter(f"ferry:metrics:s:local:{NAME}:*"):
        client.delete(key)


def create(sdk, document=SLEEPER) -> None:
    sdk.create_service(m.CreateServiceRequest(body=json.dumps(document)))


def refused(call) -> ClientException:
    with pytest.raises(ClientException) as raised:
        call()
    assert raised.value.status_code == 400
    return raised.value


def test_current_metrics_are_the_values_the_loop_last_decided_from(alice_sdk, client):
    create(alice_sdk)
    alice_sdk.create_service_auto_scaler("local", NAME, m.CreateServiceAutoScalerRequest(
        min=1, max=8, scale_strategies=QPS_10))
    assert alice_sdk.describe_service_auto_scaler("local", NAME).body.current_metrics == []  # nothing measured

    for second in range(T0 - 40, T0):
        client.hset(metrics_second_key("local", NAME, 1, second), mapping={"requests": 50, "latency_ms_sum": 0})
    AutoscalerLoop(client).tick(now=T0)
    body = alice_sdk.describe_service_auto_scaler("local", NAME).body
    [metric] = body.current_metrics
    # 50 requests a second on 1 instance, over the last 30 s; the second still being counted reads as none yet.
    assert (metric.metric_name, metric.service) == ("qps", NAME) and metric.value == pytest.approx(50 * 29 / 30)
    assert Service.objects.get(name=NAME).autoscaled_instances == 5  # 50 per instance against 10: ceil(5)


def test_cron_jobs_report_what_they_last_did_and_when_they_were_evaluated(alice_sdk, client):
    create(alice_sdk)
    alice_sdk.create_service_cron_scaler("local", NAME, m.CreateServiceCronScalerRequest(scale_jobs=[
        m.CreateServiceCronScalerRequestScaleJobs(name="morning", schedule="0 0 8 * * *", target_size=3),
        m.CreateServiceCronScalerRequestScaleJobs(name="evening", schedule="0 0 20 * * *", target_size=1)],
        exclude_dates=[]))
    before = {job.name: job for job in alice_sdk.describe_service_cron_scaler("local", NAME).body.scale_jobs}
    assert (before["morning"].state, before["morning"].last_probe_time) == ("Submitted", "")
    assert before["morning"].create_time  # when the cron scaler was set

    AutoscalerLoop(client).tick(now=T0)  # 17:46:40 UTC: the morning job is the one in effect
    jobs = {job.name: job for job in alice_sdk.describe_service_cron_scaler("local", NAME).body.scale_jobs}
    morning, evening = jobs["morning"], jobs["evening"]
    assert (morning.state, morning.last_probe_time) == ("Succeed", "2030-03-17T17:46:40Z")
    assert "ran at 2030-03-17T08:00:00+00:00" in morning.message and "instances 1 -> 3" in morning.message
    assert evening.state == "Submitted" and 'overtaken by job "morning"' in evening.message
    assert evening.last_probe_time == "2030-03-17T17:46:40Z"
    assert Service.objects.get(name=NAME).autoscaled_instances == 3


def test_strategies_nothing_would_measure_are_refused_by_field_and_change_nothing(alice_sdk):
    gpu = {**SLEEPER, "autoscaler": {"min": 1, "max": 3, "scaleStrategies": [
        {"metricName": "qps", "threshold": 10}, {"metricName": "gpu[util]", "threshold": 60}]}}
    error = refused(lambda: create(alice_sdk, gpu))
    assert error.code == "InvalidServiceConfig"
    assert "autoscaler.scaleStrategies[1].metricName: gpu[util] is not supported yet" in error.message
    assert not Service.objects.filter(name=NAME).exists()

    create(alice_sdk)
    queue = [m.CreateServiceAutoScalerRequestScaleStrategies(metric_name="queue[backlog]", threshold=5)]
    error = refused(lambda: alice_sdk.create_service_auto_scaler("local", NAME, m.CreateServiceAutoScalerRequest(
        min=1, max=3, scale_strategies=queue)))
    assert "autoscaler.scaleStrategies[0].metricName: queue[backlog] is not supported yet" in error.message

    alice_sdk.create_service_auto_scaler("local", NAME, m.CreateServiceAutoScalerRequest(
        min=1, max=3, scale_strategies=QPS_10))
    elsewhere = [m.UpdateServiceAutoScalerRequestScaleStrategies(metric_name="qps", threshold=10, service="other")]
    error = refused(lambda: alice_sdk.update_service_auto_scaler("local", NAME, m.UpdateServiceAutoScalerRequest(
        min=1, max=3, scale_strategies=elsewhere)))
    assert "autoscaler.scaleStrategies[0].service:" in error.message and "another service" in error.message
    assert Service.objects.get(name=NAME).autoscaler["scaleStrategies"] == [{"metricName": "qps", "threshold": 10}]


def test_a_kubernetes_cluster_takes_gpu_strategies_but_refuses_a_cron_scaler(alice_sdk):
    kube = Cluster.objects.create(name="kube", kind="kubernetes", flavor="raw")
    ClusterGrant.objects.create(project=Project.objects.get(name="team_a"), cluster=kube)  # an admin's grant
    document = {**SLEEPER, "metadata": {"instance": 1, "resource": "kube"},
                "autoscaler": {"min": 1, "max": 3, "scaleStrategies": [{"metricName": "gpu[util]", "threshold": 60}]}}
    create(alice_sdk, document)  # rendered as the HPA's GPU metric there (docs/kubernetes.md)
    error = refused(lambda: alice_sdk.create_service_cron_scaler("kube", NAME, m.CreateServiceCronScalerRequest(
        scale_jobs=[m.CreateServiceCronScalerRequestScaleJobs(name="morning", schedule="0 0 8 * * *",
                                                              target_size=3)], exclude_dates=[])))
    assert error.code == "CronScalerNotSupported" and "not supported on Kubernetes clusters" in error.message
    assert Service.objects.get(name=NAME).cron_scaler is None
