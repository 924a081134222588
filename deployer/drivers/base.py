"""The contract every cluster driver keeps (local processes now, Kubernetes later).

Drivers are level-based: `apply` is given the whole desired state and makes the cluster match it,
whatever it was before; calling it twice changes nothing the second time.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class TransientError(Exception):
    """Worth retrying with backoff: the cluster was busy or unreachable."""


class PermanentError(Exception):
    """Retrying will not help (invalid spec, missing processor): the service fails with this reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ObservedInstance:
    name: str
    version: int
    state: str
    ready: bool
    host: str = ""
    port: int | None = None
    restart_count: int = 0
    last_exit_reason: str = ""
    started_at: datetime | None = None


@dataclass(frozen=True)
class Observed:
    instances: list[ObservedInstance] = field(default_factory=list)


class Driver(Protocol):
    def observe(self, service) -> Observed: ...

    def apply(self, service, desired) -> None: ...

    def delete(self, service) -> None: ...

    def logs(self, service, instance_name: str, since: datetime | None, follow: bool) -> Iterator[str]: ...

    def restart_instance(self, service, instance_name: str) -> None: ...
