"""The pure decisions behind the label, safety-lock, diagnosis, container and machine-spec operations.
No database: plain facts in, answers out."""

from datetime import UTC, datetime, timedelta

import pytest

from services.api.presenters_ops import container_body, machine_spec_body
from services.errors import InvalidRequest
from services.rollouts import Rollout, RolloutState, Strategy
from services.selectors.containers import ContainerFacts
from services.selectors.diagnosis_rules import InstanceFacts, ServiceFacts, diagnose_instance, diagnose_service
from services.selectors.locks import lock_refusal
from services.selectors.machines import MachineFacts
from services.writes.labels import labels_after_update, labels_changed_message, labels_checked

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DEADLINE = 600


def ago(seconds: int) -> datetime:
    return NOW - timedelta(seconds=seconds)


def service(**overrides) -> ServiceFacts:
    facts = {"name": "iris", "phase": "Running", "running": True, "reason": "AllInstancesReady",
             "message": "2/2 instances ready", "conditions": (), "rollout": None, "instances": ()}
    return ServiceFacts(**(facts | overrides))


def instance(**overrides) -> InstanceFacts:
    facts = {"name": "iris-1-a", "state": "Running", "ready": True, "since": ago(60)}
    return InstanceFacts(**(facts | overrides))


def diagnose(facts: ServiceFacts):
    return diagnose_service(facts, now=NOW, deadline_seconds=DEADLINE)


def progressing(since: datetime, degraded_reason: str = "") -> tuple[dict, ...]:
    conditions = [{"type": "Progressing", "status": "True", "reason": "InstancesStarting", "message": "",
                   "last_transition_time": since.isoformat()}]
    if degraded_reason:
        conditions.append({"type": "Degraded", "status": "True", "reason": degraded_reason, "message": "",
                           "last_transition_time": NOW.isoformat()})
    return tuple(conditions)


# Safety lock


@pytest.mark.parametrize("lock,operation,refused", [
    ("none", "DeleteService", False),
    ("dangerous", "DeleteService", True),
    ("dangerous", "StopService", True),
    ("dangerous", "RestartService", True),
    ("dangerous", "DeleteServiceInstances", True),
    ("dangerous", "UpdateService", False),
    ("dangerous", "", False),
    ("all", "", True),
    ("all", "UpdateServiceLabel", True),
    ("all", "UpdateServiceSafetyLock", False),
    ("dangerous", "UpdateServiceSafetyLock", False),
])
def test_a_lock_refuses_what_its_level_names(lock, operation, refused):
    assert (lock_refusal(lock, operation) is not None) == refused


def test_a_refusal_says_which_lock_and_how_to_lift_it():
    message = lock_refusal("dangerous", "StopService")
    assert 'SafetyLock "dangerous"' in message and "StopService is refused" in message
    assert "UpdateServiceSafetyLock" in message
    assert "changes are refused" in lock_refusal("all")


# Labels


def test_a_merge_update_gives_the_merged_labels_and_a_replacement_keeps_them_unless_it_has_some():
    current = {"team": "search", "tier": "gold"}
    assert labels_after_update(current, {"labels": {"team": "ads"}}, "merge") == {"team": "ads"}
    assert labels_after_update(current, {}, "merge") == {}  # a merge patch that removed them all
    assert labels_after_update(current, {"name": "iris"}, "replace") == current
    assert labels_after_update(current, {"labels": {"env": "prod"}}, "replace") == {"env": "prod"}


def test_bad_labels_are_named_each_and_good_ones_pass():
    assert labels_checked({"team": "search"}, "Labels") == {"team": "search"}
    with pytest.raises(InvalidRequest) as bad:
        labels_checked({"": "x", "a,b": "y", "n": 3, "ok": "fine", "long": "v" * 300}, "Labels")
    paths = {error["Path"] for error in bad.value.errors}
    assert paths == {"Labels.", "Labels.a,b", "Labels.n", "Labels.long"}
    with pytest.raises(InvalidRequest) as not_an_object:
        labels_checked(["team"], "Labels")
    assert not_an_object.value.errors[0]["Path"] == "Labels"


def test_a_label_change_is_described_by_what_was_set_and_removed():
    message = labels_changed_message("iris", {"a": "1", "b": "2"}, {"a": "3", "c": "4"})
    assert message == "Changed the labels of iris: set a, c; removed b"


# Diagnosis of a service


def test_a_healthy_or_stopped_service_has_no_problem():
    assert diagnose(service(instances=(instance(), instance(name="iris-1-b")))) == []
    stopped = service(phase="Stopped", running=False, reason="Stopped",
                      instances=(instance(state="CrashLoopBackOff", ready=False),))
    assert diagnose(stopped) == []


def test_a_model_that_cannot_be_fetched_is_named_with_what_to_do():
    (finding,) = diagnose(service(phase="Failed", reason="ModelFetchFailed",
                                  message="Could not fetch file:///srv/models/iris.joblib: no such file"))
    assert finding.error == "The model cannot be fetched"
    assert finding.causes == ("Could not fetch file:///srv/models/iris.joblib: no such file",)
    assert any("model_path" in advice for advice in finding.advices)


def test_a_crash_loop_shows_the_exit_the_log_and_a_hint_from_them():
    crashing = instance(state="CrashLoopBackOff", ready=False, restart_count=4, exit_code=1,
                        exit_reason="exited with code 1",
                        log_tail=("Traceback (most recent call last):", "ModuleNotFoundError: No module named 'torch'"))
    (finding,) = diagnose(service(phase="Failed", reason="InstancesFailing", instances=(crashing,)))
    assert finding.error == "Instance iris-1-a keeps crashing (CrashLoopBackOff)"
    assert "Last exit: exited with code 1; restarted 4 time(s)." in finding.causes
    assert "Exit code 1: the program stopped on an error." in finding.causes
    assert finding.causes[-1].endswith("ModuleNotFoundError: No module named 'torch'")
    assert "pythonRequirements" in finding.advices[0]
    assert "DescribeServiceLog (InstanceName=iris-1-a)" in finding.advices[-1]


@pytest.mark.parametrize("exit_code,reason,log,hint", [
    (137, "killed by signal 9 (SIGKILL)", (), "metadata.memory"),
    (None, "out of memory: exceeded 512 MB limit (exited with code 1)", (), "metadata.memory"),
    (127, "exited with code 127", ("sh: 1: serve: not found",), "containers[0].script"),
    (1, "exited with code 1", ("OSError: [Errno 98] Address already in use",), "PORT"),
])
def test_common_crashes_get_the_advice_that_fits(exit_code, reason, log, hint):
    finding = diagnose_instance(instance(state="CrashLoopBackOff", ready=False, exit_code=exit_code,
                                         exit_reason=reason, log_tail=log), now=NOW, deadline_seconds=DEADLINE)
    assert any(hint in advice for advice in finding.advices), finding.advices


def test_only_the_last_log_lines_are_shown():
    lines = tuple(f"line {n}" for n in range(20))
    finding = diagnose_instance(instance(state="Failed", ready=False, log_tail=lines), now=NOW,
                                deadline_seconds=DEADLINE)
    assert finding.error == "Instance iris-1-a cannot start (Failed)"
    assert finding.causes[-1] == "Last log lines:\n" + "\n".join(lines[-5:])


def test_a_failed_rollout_says_which_version_and_that_the_old_one_serves():
    rollout = Rollout(strategy=Strategy.ROLLING, from_version=1, to_version=2, state=RolloutState.FAILED,
                      started_at=NOW, message="version 2 was not ready within 600 s")
    (finding,) = diagnose(service(rollout=rollout, instances=(instance(),)))
    assert finding.error == "Version 2 failed to roll out"
    assert finding.causes == ("version 2 was not ready within 600 s",)
    assert any("Version 1 keeps its traffic" in advice for advice in finding.advices)


def test_a_service_progressing_past_its_deadline_names_the_instances_that_are_not_ready():
    starting = instance(name="iris-1-b", state="Starting", ready=False, since=ago(700))
    pending = instance(name="iris-1-c", state="Pending", ready=False, since=ago(700))
    facts = service(phase="Creating", reason="InstancesStarting", message="1/3 instances ready",
                    conditions=progressing(ago(700)), instances=(instance(), starting, pending))
    findings = diagnose(facts)
    # Each late instance is a problem of its own; nothing more is said once they explain it.
    assert [f.error for f in findings] == ["Instance iris-1-b has not become ready",
                                           "Instance iris-1-c has not started"]
    assert any("readiness" in advice for advice in findings[0].advices)
    assert any("node agent" in advice for advice in findings[1].advices)


def test_a_timed_out_service_is_reported_even_when_no_instance_is_late_itself():
    facts = service(phase="Scaling", reason="Scaling", message="1/2 instances ready",
                    conditions=progressing(ago(30), degraded_reason="ReconcileTimeout"),
                    instances=(instance(), instance(name="iris-1-b", state="Starting", ready=False, since=ago(30))))
    (finding,) = diagnose(facts)
    assert finding.error == "Service iris is not ready within its deadline"
    assert finding.causes == (f"It has been Scaling for longer than {DEADLINE} s: 1/2 instances ready",
                              "Instance iris-1-b has not become ready")


def test_a_rollout_under_way_keeps_its_own_clock():
    rollout = Rollout(strategy=Strategy.ROLLING, from_version=1, to_version=2, state=RolloutState.PROGRESSING,
                      started_at=NOW)
    facts = service(phase="Updating", reason="RollingUpdate", message="3/10 instances ready",
                    conditions=progressing(ago(3600)), rollout=rollout, instances=(instance(),))
    assert diagnose(facts) == []


def test_progress_within_the_deadline_is_no_problem():
    facts = service(phase="Creating", reason="InstancesStarting", conditions=progressing(ago(30)),
                    instances=(instance(state="Starting", ready=False, since=ago(30)),))
    assert diagnose(facts) == []


@pytest.mark.parametrize("reason,error", [
    ("ProcessorNotInstalled", "The processor is not installed where the service runs"),
    ("WaitingForCluster", "The service's cluster cannot run it"),
    ("InvalidForKubernetes", "The cluster refuses what the service file asks for"),
    ("ActivationFailed", "The service was woken from zero but no instance became ready in time"),
    ("SomethingNew", "The service failed (SomethingNew)"),
])
def test_each_kind_of_failure_has_its_own_error(reason, error):
    (finding,) = diagnose(service(phase="Failed" if reason != "WaitingForCluster" else "Waiting", reason=reason,
                                  message="details"))
    assert finding.error == error and finding.causes == ("details",) and finding.advices


# Diagnosis of one instance


def test_an_instance_that_is_ready_or_still_starting_has_no_problem():
    assert diagnose_instance(instance(), now=NOW, deadline_seconds=DEADLINE) is None
    starting = instance(state="Starting", ready=False, since=ago(DEADLINE - 1))
    assert diagnose_instance(starting, now=NOW, deadline_seconds=DEADLINE) is None
    late = diagnose_instance(instance(state="Starting", ready=False, since=ago(DEADLINE + 5)), now=NOW,
                             deadline_seconds=DEADLINE)
    assert late.causes == (f"It started {DEADLINE + 5} s ago and its readiness check has not passed yet "
                           "(state Starting).",)


def test_an_unready_instance_is_a_problem_at_once():
    finding = diagnose_instance(instance(state="Unready", ready=False, restart_count=2), now=NOW,
                                deadline_seconds=DEADLINE)
    assert finding.error == "Instance iris-1-a was ready and now fails its readiness check"


# Containers and machines


def container(**overrides) -> ContainerFacts:
    facts = {"name": "main", "image": "python:3.11-slim", "command": "sh -c 'python app.py'", "state": "Running",
             "ready": True, "restart_count": 0, "port": 41000, "started_at": NOW, "last_exit_reason": "",
             "last_exit_code": None}
    return ContainerFacts(**(facts | overrides))


def test_a_container_shows_its_state_as_kubernetes_would():
    running = container_body(container())
    assert (running["CurrentStatus"], running["CurrentReaon"], running["Ready"]) == ("Running", "", True)
    assert (running["LastStatus"], running["LastReason"]) == ("", "")
    assert running["CurrentTimestamp"] == "2026-11-30T12:00:00Z"
    looping = container_body(container(state="CrashLoopBackOff", ready=False, restart_count=3,
                                       last_exit_reason="exited with code 1", last_exit_code=1))
    assert (looping["CurrentStatus"], looping["CurrentReaon"]) == ("Waiting", "CrashLoopBackOff")
    assert (looping["LastStatus"], looping["LastReason"], looping["LastExitCode"]) == \
        ("Terminated", "exited with code 1", 1)
    failed = container_body(container(state="Failed", ready=False, last_exit_reason="command not found"))
    assert (failed["CurrentStatus"], failed["CurrentReaon"]) == ("Terminated", "command not found")


def test_the_machine_spec_offers_the_hosts_cpus_and_round_memory_sizes_that_fit():
    body = machine_spec_body([MachineFacts(instance_type="local", cpu=2, memory_mb=3000)])
    (meta,) = body["InstanceMetas"]
    assert (meta["InstanceType"], meta["CPU"], meta["Memory"], meta["GPUAmount"]) == ("local", 2, 2.9, 0)
    assert "GPU" not in meta  # EAS leaves the GPU type out for CPU-only machines
    assert body["Types"] == [{"CPU": 1, "Memory": [512, 1024, 2048]}, {"CPU": 2, "Memory": [512, 1024, 2048]}]
    assert machine_spec_body([]) == {"InstanceMetas": [], "Types": []}
