"""What the cluster reports, as Ferry's instances, conditions and events. Pure functions over API objects.

Instance states use the local agent's names (Pending, Starting, Running, Unready, CrashLoopBackOff,
Terminating, Terminated, Failed), so status, the console and the CLI read both kinds of cluster alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from deployer.drivers.base import ObservedInstance

from .meta import VERSION_LABEL
from .pod import CONTAINER

# Waiting reasons that will not clear by themselves: the instance is Failed until something changes.
FAILED_WAITING = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                  "CreateContainerError"}


@dataclass(frozen=True)
class EventEntry:
    type: str  # Normal | Warning
    reason: str
    message: str
    instance_name: str
    at: datetime | None


def observed_instances(pods: list[dict]) -> list[ObservedInstance]:
    instances = [_instance(pod) for pod in pods if (pod["metadata"].get("labels") or {}).get(VERSION_LABEL)]
    return sorted(instances, key=lambda i: i.name)


def _instance(pod: dict) -> ObservedInstance:
    meta, status = pod["metadata"], pod.get("status") or {}
    container = _server_status(status)
    state, reason = _state(meta, status, container)
    ports = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("ports") or []
    return ObservedInstance(
        name=meta["name"], version=int(meta["labels"][VERSION_LABEL]), state=state,
        ready=state == "Running", host=status.get("podIP", ""),
        port=ports[0]["containerPort"] if ports else None,
        restart_count=int(container.get("restartCount", 0)), last_exit_reason=reason,
        started_at=_time(status.get("startTime")),
    )


def _server_status(status: dict) -> dict:
    statuses = status.get("containerStatuses") or []
    fallback = statuses[0] if statuses else {}
    return next((c for c in statuses if c.get("name") in (CONTAINER, "user-container")), fallback)


def _state(meta: dict, status: dict, container: dict) -> tuple[str, str]:
    last = (container.get("lastState") or {}).get("terminated") or {}
    exit_reason = _exit(last)
    if meta.get("deletionTimestamp"):
        return "Terminating", exit_reason
    phase = status.get("phase", "Pending")
    if phase == "Succeeded":
        return "Terminated", exit_reason
    if phase == "Failed":
        return "Failed", status.get("reason") or status.get("message") or exit_reason
    waiting = (container.get("state") or {}).get("waiting") or {}
    if waiting.get("reason") == "CrashLoopBackOff":
        return "CrashLoopBackOff", exit_reason or waiting.get("message", "")
    if waiting.get("reason") in FAILED_WAITING:
        return "Failed", f'{waiting["reason"]}: {waiting.get("message", "")}'.rstrip(": ")
    init_failure = _init_failure(status)
    if init_failure:
        return "Failed" if "BackOff" not in init_failure else "CrashLoopBackOff", init_failure
    if phase == "Pending" or not (container.get("state") or {}).get("running"):
        return "Pending", _scheduling_problem(status) or exit_reason
    if container.get("ready"):
        return "Running", exit_reason
    return ("Unready" if container.get("started") else "Starting"), exit_reason


def _init_failure(status: dict) -> str:
    """The model fetcher failing (model missing, bucket denied) shows on the init container."""
    for init in status.get("initContainerStatuses") or []:
        terminated = (init.get("lastState") or {}).get("terminated") or (init.get("state") or {}).get("terminated")
        waiting = (init.get("state") or {}).get("waiting") or {}
        if terminated and terminated.get("exitCode"):
            detail = terminated.get("message") or _exit(terminated)
            return f'{waiting.get("reason", "Init")}: init container {init["name"]} failed: {detail}'
    return ""


def _scheduling_problem(status: dict) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f'{condition.get("reason", "Unschedulable")}: {condition.get("message", "")}'.rstrip(": ")
    return ""


def _exit(terminated: dict) -> str:
    if not terminated:
        return ""
    return f'{terminated.get("reason") or "exited"} (exit code {terminated.get("exitCode", "?")})'


def knative_problems(service: dict | None) -> list[str]:
    """Messages of a Knative Service's conditions that are False (e.g. RevisionMissing, ContainerMissing)."""
    if not service:
        return []
    conditions = (service.get("status") or {}).get("conditions") or []
    return [f'{c["type"]} {c.get("reason", "")}: {c.get("message", "")}'.strip()
            for c in conditions if c.get("status") == "False"]


def event_entries(events: list[dict], pod_names: set[str], object_prefix: str) -> list[EventEntry]:
    """Kubernetes Events about the service's pods and objects (names start with its DNS name)."""
    entries = []
    for event in events:
        involved = event.get("involvedObject") or {}
        name = involved.get("name", "")
        if name not in pod_names and not name.startswith(object_prefix):
            continue
        when = _time(event.get("lastTimestamp") or event.get("eventTime") or
                     (event.get("metadata") or {}).get("creationTimestamp"))
        entries.append(EventEntry(type=event.get("type") or "Normal", reason=event.get("reason") or "Event",
                                  message=f'{involved.get("kind", "")} {name}: {event.get("message", "")}'.strip(),
                                  instance_name=name if involved.get("kind") == "Pod" else "", at=when))
    return sorted(entries, key=lambda e: (e.at or datetime.min.replace(tzinfo=UTC), e.message))


def _time(value) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
