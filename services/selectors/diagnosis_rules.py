"""What is wrong with a service or one of its instances, and what to do about it (EAS DescribeServiceDiagnosis
and DescribeServiceInstanceDiagnosis). Pure: plain facts in, findings out; no database, no clock, no files.

The facts are what Ferry already records: the status the reconciler derived (phase, reason, conditions), the
rollout record, and each instance's state, restarts, last exit and last log lines. A finding is EAS's shape:
an error, its causes, and advices. No finding means no problem found.
"""

from dataclasses import dataclass
from datetime import datetime

from services.rollouts import Rollout

CRASHING_STATES = ("CrashLoopBackOff", "Failed")
LOG_LINES_SHOWN = 5


@dataclass(frozen=True)
class Finding:
    error: str
    causes: tuple[str, ...] = ()
    advices: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstanceFacts:
    name: str
    state: str
    ready: bool
    restart_count: int = 0
    exit_code: int | None = None  # known on the local cluster only
    exit_reason: str = ""
    since: datetime | None = None  # when it started, or for a Pending one when it was asked for
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceFacts:
    name: str
    phase: str
    running: bool  # desired: not stopped on request
    reason: str
    message: str
    conditions: tuple[dict, ...] = ()
    rollout: Rollout | None = None  # the typed record (services/rollouts.py)
    instances: tuple[InstanceFacts, ...] = ()


# Status reasons that retrying cannot fix: (what is wrong, what to do).
FAILURE_ADVICE = {
    "ModelFetchFailed": ("The model cannot be fetched", (
        "Check that model_path names a file or directory that exists and that the cluster can read (for oss:// "
        "and s3:// URLs, the endpoint and the credentials).",
        "Correct model_path with UpdateService; the service tries again once it changes.")),
    "ProcessorNotInstalled": ("The processor is not installed where the service runs", (
        "Install what the message names on the host, or deploy the service to a Kubernetes cluster.",
        "Then restart the service (RestartService) so that it tries again.")),
    "ProcessorPathMissing": ("The processor's code cannot be found", (
        "Give processor_path (the package of your processor) with UpdateService.",)),
    "ProcessorEntryMissing": ("The processor's entry file is not named", (
        "Give processor_entry (e.g. app.py) with UpdateService.",)),
    "NoContainer": ("The custom processor has no container to run", (
        "Give containers[0] with a script or command with UpdateService.",)),
    "ContainerImageOnly": ("The container has no command this cluster can run", (
        "Give containers[0].script to run it on this host, or deploy it to a Kubernetes cluster.",)),
    "ActivationFailed": ("The service was woken from zero but no instance became ready in time", (
        "Diagnose its instances (DescribeServiceInstanceDiagnosis) and read their logs (DescribeServiceLog).",
        "It is not woken again until it changes: fix it with UpdateService, or RestartService.")),
}
CLUSTER_REASONS = ("WaitingForCluster", "ClusterUnreachable", "ClusterNotConnected", "InvalidKubeconfig",
                   "ClusterForbidden", "ClusterRejected", "MissingApi")
MANIFEST_REASONS = ("InvalidForKubernetes", "InvalidManifest", "InvalidClusterSettings")


def diagnose_service(facts: ServiceFacts, *, now: datetime, deadline_seconds: int) -> list[Finding]:
    """Every problem of the service, the most fundamental first; [] when there is none."""
    if not facts.running:
        return []  # stopped on request: nothing is wrong
    findings = [_status_finding(facts), _rollout_finding(facts),
                *(diagnose_instance(instance, now=now, deadline_seconds=deadline_seconds)
                  for instance in facts.instances)]
    if not any(findings):  # nothing explains a slow service better than its not-ready instances
        findings.append(_slow_finding(facts, now, deadline_seconds))
    return [finding for finding in findings if finding]


def diagnose_instance(instance: InstanceFacts, *, now: datetime, deadline_seconds: int) -> Finding | None:
    """The instance's problem, or None when it has none (ready, or still within its deadline)."""
    if instance.state in CRASHING_STATES:
        return _crash_finding(instance)
    if instance.state == "Unready":
        return Finding(f"Instance {instance.name} was ready and now fails its readiness check",
                       (f"It has restarted {instance.restart_count} time(s).",),
                       ("Read its log (DescribeServiceLog with InstanceName) for errors or a hang.",
                        "If it is overloaded, add instances (metadata.instance) or an autoscaler."))
    if instance.ready or instance.since is None or _age(instance.since, now) <= deadline_seconds:
        return None
    return _not_ready_finding(instance, now)


def _status_finding(facts: ServiceFacts) -> Finding | None:
    causes = (facts.message,) if facts.message else ()
    if facts.reason in FAILURE_ADVICE:
        error, advices = FAILURE_ADVICE[facts.reason]
        return Finding(error, causes, advices)
    if facts.reason in CLUSTER_REASONS:
        return Finding("The service's cluster cannot run it", causes, (
            "Check the cluster's connection: DescribeResource, or the console's cluster page.",
            "Once the cluster answers, the service is reconciled without any change from you."))
    if facts.reason in MANIFEST_REASONS:
        return Finding("The cluster refuses what the service file asks for", causes, (
            "Correct the field the message names with UpdateService.",))
    if facts.phase == "Failed" and facts.reason != "InstancesFailing":
        return Finding(f"The service failed ({facts.reason or 'no reason recorded'})", causes, (
            "Read the service's events (DescribeServiceEvent) for what happened before.",))
    return None


def _rollout_finding(facts: ServiceFacts) -> Finding | None:
    rollout = facts.rollout
    if rollout is None or not rollout.failed:
        return None
    return Finding(f"Version {rollout.to_version} failed to roll out", (rollout.message,), (
        f"Version {rollout.from_version} keeps its traffic.",
        "Correct the service file with UpdateService (a new version), or go back with UpdateServiceVersion."))


EXIT_CODE_MEANINGS = {
    1: "the program stopped on an error",
    2: "the command was misused (wrong arguments?)",
    126: "the command is not executable",
    127: "the command was not found",
    137: "it was killed (SIGKILL), often for using too much memory",
    139: "it crashed (segmentation fault)",
}
# (text in the exit reason or the last log lines, advice): what the usual crashes say about themselves.
LOG_HINTS = (
    ("out of memory", "Give it more memory: raise metadata.memory with UpdateService."),
    ("MemoryError", "Give it more memory: raise metadata.memory with UpdateService."),
    ("No module named", "A Python module is missing: add it to containers[0].prepare.pythonRequirements, or "
                        "install it where the processor runs."),
    ("Address already in use", "It listens on a port that is taken: listen on the port the instance is given "
                               "(the PORT environment variable)."),
    ("command not found", "The command does not exist here: check containers[0].script or command."),
    ("No such file or directory", "A file it opens does not exist: check the paths in its command and "
                                  "model_path."),
    ("Permission denied", "It may not read or run a file it needs: check the file's permissions."),
)


def _crash_finding(instance: InstanceFacts) -> Finding:
    verb = "keeps crashing" if instance.state == "CrashLoopBackOff" else "cannot start"
    causes = [f"Last exit: {instance.exit_reason or 'unknown'}; restarted {instance.restart_count} time(s)."]
    if instance.exit_code in EXIT_CODE_MEANINGS:
        causes.append(f"Exit code {instance.exit_code}: {EXIT_CODE_MEANINGS[instance.exit_code]}.")
    tail = instance.log_tail[-LOG_LINES_SHOWN:]
    if tail:
        causes.append("Last log lines:\n" + "\n".join(tail))
    return Finding(f"Instance {instance.name} {verb} ({instance.state})", tuple(causes),
                   (*_hints(instance), f"Read its whole log with DescribeServiceLog (InstanceName={instance.name}); "
                                       "a corrected service file (UpdateService) starts a new version."))


def _hints(instance: InstanceFacts) -> tuple[str, ...]:
    text = "\n".join((instance.exit_reason, *instance.log_tail))
    hints = [advice for needle, advice in LOG_HINTS if needle in text]
    if instance.exit_code == 137 and not hints:
        hints.append("If it ran out of memory, raise metadata.memory with UpdateService.")
    if instance.exit_code == 127 and not any("command" in hint for hint in hints):
        hints.append("The command does not exist here: check containers[0].script or command.")
    return tuple(dict.fromkeys(hints))


def _not_ready_finding(instance: InstanceFacts, now: datetime) -> Finding:
    age = int(_age(instance.since, now))
    if instance.state == "Pending":
        return Finding(f"Instance {instance.name} has not started", (f"It was asked for {age} s ago.",), (
            "On the local cluster the node agent starts instances: check that it runs (make run starts it).",))
    return Finding(f"Instance {instance.name} has not become ready", (
        f"It started {age} s ago and its readiness check has not passed yet (state {instance.state}).",), (
        "Check that it listens on the port it is given (PORT) and answers its readiness path "
        "(containers[0].readiness_check, or the processor's health path).",
        "A large model may need longer: read its log (DescribeServiceLog) to see how far it got."))


def _slow_finding(facts: ServiceFacts, now: datetime, deadline_seconds: int) -> Finding | None:
    """Progressing past the deadline with no crash to explain it: name the instances that are not ready. A
    rollout under way keeps its own clock (a rolling update of many instances may take hours) and fails by
    itself when it stops progressing: then _rollout_finding speaks."""
    if facts.rollout is not None and facts.rollout.in_progress:
        return None
    if not _timed_out(facts.conditions) and _progressing_for(facts.conditions, now) <= deadline_seconds:
        return None
    waiting = [_not_ready_finding(instance, now) for instance in facts.instances if not instance.ready]
    causes = (f"It has been {facts.phase} for longer than {deadline_seconds} s: {facts.message}",
              *(finding.error for finding in waiting))
    advices = tuple(dict.fromkeys(advice for finding in waiting for advice in finding.advices))
    return Finding(f"Service {facts.name} is not ready within its deadline", causes,
                   advices or ("Read the service's events (DescribeServiceEvent).",))


def _timed_out(conditions: tuple[dict, ...]) -> bool:
    return any(c.get("type") == "Degraded" and c.get("status") == "True" and c.get("reason") == "ReconcileTimeout"
               for c in conditions)


def _progressing_for(conditions: tuple[dict, ...], now: datetime) -> float:
    """Seconds the service has been progressing; 0 when it is not."""
    progressing = next((c for c in conditions if c.get("type") == "Progressing" and c.get("status") == "True"), {})
    since = progressing.get("last_transition_time")
    return _age(datetime.fromisoformat(since), now) if since else 0.0


def _age(since: datetime, now: datetime) -> float:
    return (now - since).total_seconds()
