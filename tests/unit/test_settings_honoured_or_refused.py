"""A setting Ferry accepts, it honours; one it does not do yet is refused by name (never accepted and ignored)."""

import copy

import pytest

from deployer.kubernetes.render import render
from deployer.kubernetes.volumes import RenderError
from services.servicefile import ServiceFileError, validate_service_file
from tests.kubernetes.helpers import by_kind, desired_for, example

BASE = {"name": "svc", "processor": "sklearn", "model_path": "/models/iris.joblib", "metadata": {"instance": 1}}


def _validated(**metadata) -> dict:
    doc = copy.deepcopy(BASE)
    doc["metadata"].update(metadata)
    return validate_service_file(doc)


def _refusals(**metadata) -> dict[str, str]:
    with pytest.raises(ServiceFileError) as raised:
        _validated(**metadata)
    return {error.path: error.message for error in raised.value.errors}


@pytest.mark.parametrize("metadata, path", [
    ({"type": "LLM"}, "metadata.type"),
    ({"workload_type": "elasticjob"}, "metadata.workload_type"),
    ({"rpc": {"rate_limit": 100}}, "metadata.rpc.rate_limit"),
    ({"rpc.rate_limit": 100}, "metadata.rpc.rate_limit"),  # EAS's flat spelling reaches the same check
    ({"resource_rebalancing": True}, "metadata.resource_rebalancing"),
])
def test_it_refuses_a_setting_it_does_not_do_yet_by_its_path(metadata, path):
    refusals = _refusals(**metadata)
    assert list(refusals) == [path], refusals
    assert "not" in refusals[path] and "remove it" in refusals[path]


def test_it_reports_every_refused_setting_at_once():
    refusals = _refusals(workload_type="elasticjob", rpc={"rate_limit": 100}, resource_rebalancing=True)
    assert set(refusals) == {"metadata.workload_type", "metadata.rpc.rate_limit", "metadata.resource_rebalancing"}


@pytest.mark.parametrize("metadata", [{"rpc": {"batching": False, "rate_limit": 0}}, {"resource_rebalancing": False},
                                      {"type": ""}, {"type": "Async"}])
def test_it_accepts_those_settings_spelt_out_as_off(metadata):
    _validated(**metadata)


def test_it_accepts_per_instance_concurrency_as_a_counted_field():
    assert _validated(container_concurrency=4)["metadata"]["container_concurrency"] == 4
    assert _refusals(container_concurrency=-1) == {"metadata.container_concurrency": "must be an integer >= 0"}


def test_knative_renders_per_instance_concurrency_as_container_concurrency():
    doc = example("iris_sklearn")
    doc = {**doc, "metadata": {**doc["metadata"], "container_concurrency": 3}}
    service = by_kind(render(desired_for(doc, flavor="knative")), "Service")
    assert service["spec"]["template"]["spec"]["containerConcurrency"] == 3


def test_the_raw_flavor_refuses_per_instance_concurrency_by_name():
    doc = example("iris_sklearn")
    doc = {**doc, "metadata": {**doc["metadata"], "container_concurrency": 3}}
    with pytest.raises(RenderError) as raised:
        render(desired_for(doc, flavor="raw"))
    assert raised.value.path == "metadata.container_concurrency" and "knative" in str(raised.value)
