"""Instance logs come from the cluster's driver (process log files locally, pod logs on Kubernetes)."""

from datetime import datetime

from services.models import Service


def service_log_lines(service: Service, *, instance_name: str = "", keyword: str = "",
                      start: datetime | None = None, end: datetime | None = None) -> list[str]:
    from deployer.drivers import driver_for  # the deployer depends on services; import at call time

    driver = driver_for(service.cluster)
    if driver is None:
        return []  # nothing has run: a cluster without a driver has no logs to show
    names = [instance_name] if instance_name else list(service.instances.values_list("name", flat=True))
    lines = []
    for name in names:
        lines.extend(line for line in driver.logs(service, name, since=start, follow=False)
                     if keyword in line and (end is None or _line_time(line) is None or _line_time(line) <= end))
    return lines


def _line_time(line: str) -> datetime | None:
    try:
        return datetime.fromisoformat(line.split(" ", 1)[0])
    except ValueError:
        return None
