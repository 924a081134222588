"""Pods, Knative conditions and Events as Ferry's instances and timeline: from the fake's controllers and
from hand-written API objects for the states a fake cannot reach on its own."""

from deployer.kubernetes.apply import apply_manifests
from deployer.kubernetes.meta import service_selector
from deployer.kubernetes.observe import event_entries, knative_problems, observed_instances
from deployer.kubernetes.render import render
from tests.kubernetes.helpers import desired_for, example

NAMESPACE = "ferry-team-a"


def _pods(api, name="iris_sklearn"):
    return api.list("v1", "Pod", NAMESPACE, label_selector=service_selector(name))


def _deploy(api, desired):
    apply_manifests(api, render(desired), namespace=NAMESPACE, selector=service_selector(desired.name))


def test_it_reports_ready_pods_as_running_instances_of_their_version(fake, api):
    _deploy(api, desired_for(example("iris_sklearn")))
    fake.run_controllers()
    instances = observed_instances(_pods(api))
    assert [(i.version, i.state, i.ready, i.port) for i in instances] == [(1, "Running", True, 8080)] * 2
    assert all(i.host.startswith("10.0.0.") and i.started_at for i in instances)


def test_it_reports_pods_not_ready_yet_as_starting(fake, api):
    _deploy(api, desired_for(example("iris_sklearn")))
    fake.run_controllers(ready=False)
    assert {i.state for i in observed_instances(_pods(api))} == {"Starting"}


def test_it_reports_a_crash_loop_with_the_exit_reason(fake, api):
    _deploy(api, desired_for(example("iris_sklearn")))
    fake.run_controllers()
    pod = _pods(api)[0]["metadata"]["name"]
    fake.controllers.crash(pod, reason="OOMKilled", exit_code=137, restarts=4)
    crashed = next(i for i in observed_instances(_pods(api)) if i.name == pod)
    assert (crashed.state, crashed.ready, crashed.restart_count) == ("CrashLoopBackOff", False, 4)
    assert crashed.last_exit_reason == "OOMKilled (exit code 137)"


def test_a_knative_revision_pod_counts_as_its_version(fake, api):
    _deploy(api, desired_for(example("iris_sklearn"), flavor="knative"))
    fake.run_controllers()
    assert [(i.version, i.state) for i in observed_instances(_pods(api))] == [(1, "Running")] * 2


def _pod(**status):
    return {"metadata": {"name": "p", "labels": {"ferry.dev/version": "3"}},
            "spec": {"containers": [{"name": "server", "ports": [{"containerPort": 8080}]}]}, "status": status}


def test_an_image_that_cannot_be_pulled_is_a_failed_instance():
    pod = _pod(phase="Pending", containerStatuses=[{"name": "server", "state": {
        "waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "nope"'}}}])
    (instance,) = observed_instances([pod])
    assert instance.state == "Failed" and instance.last_exit_reason.startswith("ImagePullBackOff")


def test_a_failing_model_fetch_shows_the_fetchers_message():
    pod = _pod(phase="Pending", initContainerStatuses=[{"name": "fetch-model", "state": {
        "waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {
            "exitCode": 1, "message": "http://m/model.onnx: 404 Not Found"}}}])
    (instance,) = observed_instances([pod])
    assert instance.state == "CrashLoopBackOff"
    assert "404 Not Found" in instance.last_exit_reason and "fetch-model" in instance.last_exit_reason


def test_an_unschedulable_pod_says_why():
    pod = _pod(phase="Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                             "message": "0/3 nodes have enough nvidia.com/gpu"}])
    (instance,) = observed_instances([pod])
    assert instance.state == "Pending" and "nvidia.com/gpu" in instance.last_exit_reason


def test_a_terminating_pod_and_pods_of_other_workloads():
    terminating = _pod(phase="Running")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    unlabelled = {"metadata": {"name": "other", "labels": {}}, "status": {}}
    assert [i.state for i in observed_instances([terminating, unlabelled])] == ["Terminating"]


def test_knative_conditions_that_are_false_are_problems(fake, api):
    doc = example("iris_sklearn")
    # v1 was never applied to this cluster: the traffic block names a revision that does not exist.
    changed = {**doc, "model_entry": "x"}
    _deploy(api, desired_for(doc, flavor="knative", versions=[(1, 50, 1, doc), (2, 50, 1, changed)]))
    fake.run_controllers()
    service = api.get("serving.knative.dev/v1", "Service", "iris-sklearn", NAMESPACE)
    assert knative_problems(service) == [
        'Ready RevisionMissing: Revision "iris-sklearn-v1" referenced in traffic not found.']


def test_events_about_the_services_pods_and_objects_become_timeline_entries(fake, api):
    _deploy(api, desired_for(example("iris_sklearn")))
    fake.run_controllers()
    pod = _pods(api)[0]["metadata"]["name"]
    fake.controllers.event(NAMESPACE, "Pod", pod, "FailedScheduling", "0/3 nodes are available")
    fake.controllers.event(NAMESPACE, "HorizontalPodAutoscaler", "iris-sklearn-v1", "SuccessfulRescale",
                           "New size: 3", type_="Normal")
    fake.controllers.event(NAMESPACE, "Pod", "someone-else-1", "BackOff", "not ours")
    entries = event_entries(api.list("v1", "Event", NAMESPACE), {pod}, "iris-sklearn")
    assert {(e.reason, e.instance_name) for e in entries} == {("FailedScheduling", pod), ("SuccessfulRescale", "")}
    assert all(e.at is not None for e in entries)
