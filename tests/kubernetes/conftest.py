"""Fixtures: the fake API server with the real `kubernetes` client pointed at it, and (for the suite marked
`kubernetes`) a real cluster when KUBECONFIG is set."""

import pytest
from kubernetes import client as k8s

from deployer.kubernetes.client import KubeApi
from tests.kubernetes.fake_apiserver import FakeKubernetesApiServer
from tests.kubernetes.schemas import validate_known


@pytest.fixture
def fake():
    # The fake validates what it is given against the same schemas as the golden tests: 422 as a real one.
    with FakeKubernetesApiServer(validator=validate_known) as server:
        yield server
    assert not server.errors, f"the fake API server failed on requests: {server.errors}"


def api_for_url(url: str, tmp_path) -> KubeApi:
    configuration = k8s.Configuration()
    configuration.host = url
    return KubeApi(k8s.ApiClient(configuration), sleep=lambda seconds: None,
                   discovery_cache=str(tmp_path / "discovery.json"))


@pytest.fixture
def api(fake, tmp_path) -> KubeApi:
    return api_for_url(fake.url, tmp_path)
