"""The containers of an instance (EAS ListServiceContainers).

A Ferry instance has one container: on the local cluster the process the node agent runs (the built-in model
server, another processor's server, or a custom script), on Kubernetes the pod's serving container.
"""

import shlex
from dataclasses import dataclass
from datetime import datetime

from services.errors import NotFound
from services.models import Instance, Service
from services.ports import LocalProcess, deployer

CONTAINER_NAME = "main"


@dataclass(frozen=True)
class ContainerFacts:
    name: str
    image: str
    command: str
    state: str  # the instance's state: Pending, Starting, Running, Unready, CrashLoopBackOff, Failed, ...
    ready: bool
    restart_count: int
    port: int | None
    started_at: datetime | None
    last_exit_reason: str
    last_exit_code: int | None


def instance_containers(service: Service, instance_name: str) -> list[ContainerFacts]:
    instance = service.instances.select_related("version").filter(name=instance_name).first()
    if instance is None:
        raise NotFound(f"No instance named {instance_name} in service {service.name}.", code="InstanceNotFound")
    local = _local_row(service, instance_name)
    return [ContainerFacts(
        name=CONTAINER_NAME, image=_image(instance), command=_command(instance, local), state=instance.state,
        ready=instance.ready, restart_count=instance.restart_count, port=instance.port,
        started_at=instance.started_at, last_exit_reason=instance.last_exit_reason,
        last_exit_code=local.last_exit_code if local is not None else None,
    )]


def _local_row(service: Service, instance_name: str) -> LocalProcess | None:
    return deployer().local_processes(service).get(instance_name)


def _image(instance: Instance) -> str:
    """The image the file names: what Kubernetes runs, and on the local cluster only what it stands for."""
    containers = instance.version.service_file.get("containers") or []
    return containers[0].get("image", "") if containers else ""


def _command(instance: Instance, local) -> str:
    """What runs: the local process's command line, else the command the file gives its container."""
    if local is not None and local.argv:
        port = str(local.port) if local.port else "{port}"
        return shlex.join(arg.replace("{port}", port) for arg in local.argv)
    containers = instance.version.service_file.get("containers") or []
    container = containers[0] if containers else {}
    command = container.get("script") or container.get("command") or ""
    return command if isinstance(command, str) else shlex.join([*command, *container.get("args", [])])
