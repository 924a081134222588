"""Instance logs come from the cluster's driver (per-instance log files locally, pod logs on Kubernetes)."""

import re
from datetime import UTC, datetime

from services.errors import NotFound
from services.models import Service
from services.ports import deployer

# Both "2026-11-21T21:34:46.508Z" (the node agent) and "2026-11-21 21:34:48.291" (servers' logging) lead lines.
LINE_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?Z?\b")


def service_log_lines(service: Service, *, instance_name: str = "", keyword: str = "",
                      start: datetime | None = None, end: datetime | None = None) -> list[str]:
    """Matching lines, oldest first. Without an instance name every instance's lines come, each prefixed
    with its instance's name. A line with no timestamp (a traceback's) takes the time of the line before."""
    names = [instance_of(service, instance_name)] if instance_name else list(
        service.instances.values_list("name", flat=True))
    logs = deployer().instance_logs(service, names, since=start)
    if logs is None:
        return []  # nothing has run: a cluster without a driver has no logs to show
    lines = []
    for name, log in logs.items():
        prefix = "" if instance_name else f"{name}: "
        lines.extend(prefix + line for line in _matching(log, keyword, start, end))
    return lines


def instance_of(service: Service, instance_name: str) -> str:
    """The name, if it names an instance of this very service (observed, or one the node agent still keeps).
    Checked against the service's rows, never used as a path: another service's instance, another project's, a
    deleted service's or `../` answer the same "not found"."""
    if service.instances.filter(name=instance_name).exists() or instance_name in deployer().local_processes(service):
        return instance_name
    raise NotFound(f"No instance named {instance_name} in service {service.name}.", code="InstanceNotFound")


def _matching(lines, keyword: str, start: datetime | None, end: datetime | None):
    current = None
    for line in lines:
        current = line_time(line) or current
        if start and (current is None or current < start):
            continue
        if end and current and current > end:
            continue
        if keyword in line:
            yield line


def line_time(line: str) -> datetime | None:
    match = LINE_TIME.match(line)
    if not match:
        return None
    day, clock, fraction = match.groups()
    return datetime.fromisoformat(f"{day}T{clock}{fraction or ''}").replace(tzinfo=UTC)
