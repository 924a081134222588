"""The apply / observe / prune / delete scenarios against a real cluster (kind or k3s): runs when KUBECONFIG
is set, and is skipped with a message otherwise. See docs/kubernetes.md, "Tests against a real cluster".

Everything happens in a namespace of its own (ferry-test-<random>), deleted at the end. Objects of kinds the
cluster does not serve (HTTPRoute without the Gateway API CRDs) are left out, as Ferry would fail on them.
"""

import os
import secrets
import time

import pytest

from deployer.drivers.base import PermanentError
from deployer.kubernetes.apply import apply_manifests, delete_all
from deployer.kubernetes.client import KubeApi
from deployer.kubernetes.desired import ClusterSettings, ServiceDesired, VersionDesired
from deployer.kubernetes.meta import service_selector
from deployer.kubernetes.observe import observed_instances
from deployer.kubernetes.render import namespace_manifest, render

pytestmark = pytest.mark.kubernetes
READY_TIMEOUT = 240
ECHO = {"name": "echo_real", "processor": "custom",
        "containers": [{"image": "python:3.11-slim", "script": "python -m http.server 8000", "port": 8000}],
        "metadata": {"instance": 1, "cpu": 0.1, "memory": 128, "rpc": {"keepalive": 5000}}}


@pytest.fixture(scope="module")
def real_api():
    path = os.environ.get("KUBECONFIG")
    if not path:
        pytest.skip("KUBECONFIG is not set: the real-cluster suite needs a test cluster (kind or k3s); "
                    "see docs/kubernetes.md")
    from kubernetes import config

    return KubeApi(config.new_client_from_config(config_file=path))


@pytest.fixture
def namespace(real_api):
    name = f"ferry-test-{secrets.token_hex(3)}"
    real_api.apply(namespace_manifest(name))
    yield name
    real_api.delete("v1", "Namespace", name)


def _desired(namespace, versions=((1, 100, 1),), autoscaler=None, doc=ECHO):
    return ServiceDesired(name=doc["name"], namespace=namespace, cluster=ClusterSettings(drain_seconds=1),
                          versions=tuple(VersionDesired(n, w, r, _file(doc, n)) for n, w, r in versions),
                          autoscaler=autoscaler)


def _file(doc, number):
    # Each version differs (as versions do): an environment variable names it.
    container = {**doc["containers"][0], "env": [{"name": "VERSION", "value": str(number)}]}
    return {**doc, "containers": [container]}


def _apply(api, desired):
    manifests = [m for m in render(desired) if api.served(m["apiVersion"], m["kind"])]
    return apply_manifests(api, manifests, namespace=desired.namespace, selector=service_selector(desired.name))


def _wait_ready(api, namespace, count, version=None):
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        pods = api.list("v1", "Pod", namespace, label_selector=service_selector(ECHO["name"]))
        ready = [i for i in observed_instances(pods) if i.ready and (version is None or i.version == version)]
        if len(ready) >= count:
            return ready
        time.sleep(2)
    raise AssertionError(f"fewer than {count} ready instances after {READY_TIMEOUT} s: {observed_instances(pods)}")


def test_it_applies_idempotently_and_observes_ready_pods(real_api, namespace):
    desired = _desired(namespace)
    first = _apply(real_api, desired)
    assert "Deployment/echo-real-v1" in first.created
    assert _apply(real_api, desired).created == []
    (instance,) = _wait_ready(real_api, namespace, 1)
    assert instance.version == 1 and instance.host


def test_a_rollout_prunes_the_old_version(real_api, namespace):
    _apply(real_api, _desired(namespace))
    _apply(real_api, _desired(namespace, versions=((1, 50, 1), (2, 50, 1))))
    _wait_ready(real_api, namespace, 1, version=2)
    result = _apply(real_api, _desired(namespace, versions=((2, 100, 1),)))
    assert "Deployment/echo-real-v1" in result.pruned


def test_the_hpa_keeps_the_replicas(real_api, namespace):
    autoscaler = {"min": 2, "max": 3, "scaleStrategies": [{"metricName": "cpu", "threshold": 80}]}
    _apply(real_api, _desired(namespace, autoscaler=autoscaler))
    deployment = real_api.get("apps/v1", "Deployment", "echo-real-v1", namespace)
    assert "replicas" not in [f for e in deployment["metadata"]["managedFields"] if e["manager"] == "ferry"
                              for f in e["fieldsV1"].get("f:spec", {})]


def test_an_invalid_object_is_a_permanent_error(real_api, namespace):
    manifests = render(_desired(namespace))
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    deployment["spec"]["replicas"] = -1
    with pytest.raises(PermanentError, match="spec.replicas"):
        real_api.apply(deployment)


def test_deletion_removes_everything(real_api, namespace):
    _apply(real_api, _desired(namespace))
    deadline = time.monotonic() + READY_TIMEOUT
    while not delete_all(real_api, namespace=namespace, selector=service_selector(ECHO["name"])):
        assert time.monotonic() < deadline, "objects or pods still there"
        time.sleep(2)
