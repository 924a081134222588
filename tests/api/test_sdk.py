"""The official EAS SDK (alibabacloud-eas20210701) as a real client of Ferry, with both kinds of credentials."""

import json

import pytest
from alibabacloud_eas20210701 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException

from .conftest import example_files

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def create_examples(sdk) -> list[str]:
    names = []
    for path in example_files():
        response = sdk.create_service(m.CreateServiceRequest(body=path.read_text()))
        assert response.status_code == 202
        names.append(response.body.service_name)
    return names


def reasons(sdk, name: str) -> list[str]:
    events = sdk.describe_service_event("local", name, m.DescribeServiceEventRequest(page_size=100)).body.events
    return [event.reason for event in events]


def test_it_creates_lists_and_describes_every_example_file(alice_sdk):
    names = create_examples(alice_sdk)
    assert sorted(names) == ["bert_tfserving", "digits_onnx", "echo_app", "iris_sklearn", "triton_test"]

    listed = alice_sdk.list_services(m.ListServicesRequest(page_size=2, page_number=1, sort="ServiceName",
                                                           order="asc")).body
    assert listed.total_count == 5
    assert [service.service_name for service in listed.services] == ["bert_tfserving", "digits_onnx"]

    described = alice_sdk.describe_service("local", "iris_sklearn").body
    assert described.service_name == "iris_sklearn"
    assert described.total_instance == 2
    assert described.current_version == described.latest_version == 1
    assert described.access_token
    # The example's model is a placeholder path that does not exist here: the service fails, naming it.
    assert described.status == "Failed"
    assert described.reason == "ModelFetchFailed"
    assert "/srv/models/iris/model.joblib" in described.message
    assert json.loads(described.service_config)["model_path"] == "file:///srv/models/iris/model.joblib"

    echo = json.loads(alice_sdk.describe_service("local", "echo_app").body.service_config)
    assert echo["processor"] == "custom"
    assert echo["containers"][0]["image"] == "python:3.11-slim"


def test_it_makes_a_version_only_when_the_instance_shape_changes(alice_sdk):
    create_examples(alice_sdk)
    alice_sdk.update_service("local", "iris_sklearn",
                             m.UpdateServiceRequest(body=json.dumps({"metadata": {"instance": 3}})))
    versions = alice_sdk.list_service_versions("local", "iris_sklearn", m.ListServiceVersionsRequest()).body
    assert versions.total_count == 1
    assert alice_sdk.describe_service("local", "iris_sklearn").body.total_instance == 3

    alice_sdk.update_service("local", "iris_sklearn", m.UpdateServiceRequest(
        body=json.dumps({"model_path": "file:///srv/models/iris/v2.joblib"})))
    versions = alice_sdk.list_service_versions("local", "iris_sklearn", m.ListServiceVersionsRequest()).body
    assert [version.image_id for version in versions.versions] == [2, 1]
    described = alice_sdk.describe_service("local", "iris_sklearn").body
    # Version 2's model path does not exist here: its rollout fails and it never takes traffic.
    assert (described.current_version, described.latest_version, described.total_instance) == (1, 2, 3)
    assert "RolloutFailed" in reasons(alice_sdk, "iris_sklearn")

    alice_sdk.update_service_version("local", "iris_sklearn", m.UpdateServiceVersionRequest(version=1))
    described = alice_sdk.describe_service("local", "iris_sklearn").body
    assert (described.current_version, described.latest_version) == (1, 2)
    assert json.loads(described.service_config)["model_path"] == "file:///srv/models/iris/model.joblib"
    assert described.total_instance == 3  # a rollback changes what runs, not how many
    assert {"CreatedVersion", "RolledBack", "UpdatedScaling"} <= set(reasons(alice_sdk, "iris_sklearn"))


def test_it_releases_group_weights_and_lists_groups(alice_sdk):
    create_examples(alice_sdk)
    alice_sdk.release_service("local", "bert_tfserving",
                              m.ReleaseServiceRequest(weight=30, traffic_state="grouping"))
    described = alice_sdk.describe_service("local", "bert_tfserving").body
    assert (described.service_group, described.weight, described.traffic_state) == ("bert", 30, "grouping")
    groups = alice_sdk.list_groups(m.ListGroupsRequest()).body.groups
    assert [(group.name, group.cluster_id) for group in groups] == [("bert", "local")]
    assert alice_sdk.describe_group("local", "bert").body.name == "bert"

    with pytest.raises(ClientException) as outside_group:
        alice_sdk.release_service("local", "iris_sklearn", m.ReleaseServiceRequest(weight=30))
    assert outside_group.value.status_code == 400
    assert "no service group" in outside_group.value.message


def test_it_sets_and_removes_autoscaler_cron_scaler_and_mirror(alice_sdk):
    create_examples(alice_sdk)
    alice_sdk.create_service_auto_scaler("local", "iris_sklearn", m.CreateServiceAutoScalerRequest(
        min=1, max=5, scale_strategies=[m.CreateServiceAutoScalerRequestScaleStrategies(metric_name="qps",
                                                                                        threshold=10)]))
    autoscaler = alice_sdk.describe_service_auto_scaler("local", "iris_sklearn").body
    assert (autoscaler.min_replica, autoscaler.max_replica) == (1, 5)
    assert [(s.metric_name, s.threshold) for s in autoscaler.scale_strategies] == [("qps", 10)]

    alice_sdk.create_service_cron_scaler("local", "iris_sklearn", m.CreateServiceCronScalerRequest(
        scale_jobs=[m.CreateServiceCronScalerRequestScaleJobs(name="evening", schedule="0 0 18 * * *",
                                                              target_size=4)],
        exclude_dates=["0 0 0 1 1 *"]))
    cron = alice_sdk.describe_service_cron_scaler("local", "iris_sklearn").body
    assert [(job.name, job.schedule, job.target_size) for job in cron.scale_jobs] == [("evening", "0 0 18 * * *", 4)]
    assert cron.exclude_dates == ["0 0 0 1 1 *"]

    alice_sdk.create_service_mirror("local", "iris_sklearn",
                                    m.CreateServiceMirrorRequest(target=["digits_onnx"], ratio=30))
    mirror = alice_sdk.describe_service_mirror("local", "iris_sklearn").body
    assert (mirror.target, mirror.ratio) == ("digits_onnx", "30")

    alice_sdk.delete_service_mirror("local", "iris_sklearn")
    alice_sdk.delete_service_cron_scaler("local", "iris_sklearn")
    alice_sdk.delete_service_auto_scaler("local", "iris_sklearn")
    for describe in (alice_sdk.describe_service_mirror, alice_sdk.describe_service_cron_scaler,
                     alice_sdk.describe_service_auto_scaler):
        with pytest.raises(ClientException) as gone:
            describe("local", "iris_sklearn")
        assert gone.value.status_code == 404
    # Scaling settings are not versions.
    versions = alice_sdk.list_service_versions("local", "iris_sklearn", m.ListServiceVersionsRequest()).body
    assert versions.total_count == 1


def test_it_deletes_services_and_forgets_them(alice_sdk):
    names = create_examples(alice_sdk)
    for name in names:
        response = alice_sdk.delete_service("local", name)
        assert response.status_code == 202
    assert alice_sdk.list_services(m.ListServicesRequest()).body.total_count == 0
    with pytest.raises(ClientException) as missing:
        alice_sdk.describe_service("local", "iris_sklearn")
    assert (missing.value.status_code, missing.value.code) == (404, "ServiceNotFound")


def test_it_reports_every_problem_of_a_bad_file_through_the_sdk(alice_sdk):
    bad = {"name": "Bad-Name", "processor": "sklearn", "model_path": "ftp://x/model.joblib",
           "metadata": {"instance": -1, "cpu": "four", "colour": "blue"}}
    with pytest.raises(ClientException) as rejected:
        alice_sdk.create_service(m.CreateServiceRequest(body=json.dumps(bad)))
    assert rejected.value.status_code == 400
    assert rejected.value.code == "InvalidServiceConfig"
    for path in ("name", "model_path", "metadata.instance", "metadata.cpu", "colour"):
        assert path in rejected.value.message
    assert alice_sdk.list_services(m.ListServicesRequest()).body.total_count == 0
