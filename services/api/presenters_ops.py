"""Containers, diagnoses and machine specs in the shapes and PascalCase names of EAS's OpenAPI (2021-07-01)."""

from services.selectors.containers import ContainerFacts
from services.selectors.diagnosis_rules import Finding
from services.selectors.machines import MachineFacts

from .presenters import eas_time

# An instance's state as a Kubernetes container state (EAS runs on Kubernetes): (status, reason).
CONTAINER_STATES = {
    "Pending": ("Waiting", "Pending"),
    "Starting": ("Running", "Starting"),
    "Running": ("Running", ""),
    "Unready": ("Running", "Unready"),
    "CrashLoopBackOff": ("Waiting", "CrashLoopBackOff"),
    "Terminating": ("Running", "Terminating"),
    "Terminated": ("Terminated", "Completed"),
    "Failed": ("Terminated", "Error"),
}
# Memory sizes (MB) Types offers with each CPU count: powers of two up to what the host has.
MEMORY_STEPS_MB = tuple(2**n for n in range(9, 21))


def container_body(container: ContainerFacts) -> dict:
    status, reason = CONTAINER_STATES.get(container.state, (container.state, ""))
    exited_before = container.restart_count > 0 or bool(container.last_exit_reason)
    return {
        "Name": container.name,
        "Image": container.image,
        "Ready": container.ready,
        "RestartCount": container.restart_count,
        "Port": container.port or 0,
        "CurrentStatus": status,
        # "CurrentReaon" (sic) is the name EAS's SDK reads.
        "CurrentReaon": container.last_exit_reason if container.state == "Failed" else reason,
        "CurrentTimestamp": eas_time(container.started_at),
        "LastStatus": "Terminated" if exited_before else "",
        "LastReason": container.last_exit_reason if exited_before else "",
        "LastTimestamp": "",  # the time of the last exit is not recorded
        # Ferry's additions: what runs, and how the last run ended.
        "Command": container.command,
        "LastExitCode": container.last_exit_code,
    }


def finding_body(finding: Finding | None) -> dict:
    if finding is None:
        return {"Error": "", "Causes": [], "Advices": []}
    return {"Error": finding.error, "Causes": list(finding.causes), "Advices": list(finding.advices)}


def diagnosis_summary(count: int) -> str:
    return "No problem found." if count == 0 else f"Found {count} problem(s)."


def machine_spec_body(machines: list[MachineFacts]) -> dict:
    metas = [{
        "InstanceType": machine.instance_type,
        "CPU": machine.cpu,
        "Memory": round(machine.memory_mb / 1024, 1),  # GB, as EAS gives it
        "GPUAmount": 0,
        "GPUMemory": 0,
        "IsAvailable": True,
        "StockStatus": "WithStock",
        "Vendor": "Local",
    } for machine in machines]
    return {"InstanceMetas": metas, "Types": _types(machines)}


def _types(machines: list[MachineFacts]) -> list[dict]:
    """The CPU counts a service may ask for (metadata.cpu), each with memory sizes that fit (metadata.memory, MB).
    A service may ask any amount up to the host's; these are the round sizes."""
    if not machines:
        return []
    cpu = max(machine.cpu for machine in machines)
    memory_mb = max(machine.memory_mb for machine in machines)
    sizes = [size for size in MEMORY_STEPS_MB if size <= memory_mb]
    return [{"CPU": count, "Memory": sizes} for count in range(1, cpu + 1)]
