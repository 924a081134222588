"""The contract every cluster driver keeps: the local cluster (processes the node agent runs) and Kubernetes
(rendered manifests). deployer/reconcile.py calls exactly these methods, in this order, for every cluster:

    observe -> prepare(plan) -> apply(prepared) -> restart_instance (on request) -> observe
    delete (the service is being deleted)        logs (the API, the console, diagnosis)

Drivers are level-based: `apply` is given the whole desired state and makes the cluster match it, whatever it
was before; calling it twice changes nothing the second time. `prepare` decides, `apply` acts: what a plan
needs on this cluster (and which versions cannot run there, or wait for their files) is known before anything
is touched, so a rollout to a version that cannot start fails without side effects.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


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


@dataclass(frozen=True)
class Prepared:
    """What a driver makes of a rollout plan before it touches the cluster."""

    desired: Any  # handed back to apply(): the local cluster's [(name, version, launch)], Kubernetes' ServiceDesired
    expected: int  # instances the service should have once this is applied
    failures: Mapping[int, PermanentError] = field(default_factory=dict)  # versions that cannot run, with why
    fetching: Mapping[int, str] = field(default_factory=dict)  # versions waiting for their files, with what
    names: frozenset[str] | None = None  # the instances that count towards `expected`, by name (local), or
    versions: frozenset[int] = frozenset()  # by version, when the cluster names its pods itself (Kubernetes)

    def counts(self, instance: ObservedInstance) -> bool:
        """Whether an observed instance is one of those this plan expects (not one being drained)."""
        return instance.name in self.names if self.names is not None else instance.version in self.versions


class Driver(Protocol):
    def observe(self, service) -> Observed: ...

    def prepare(self, service, plan, observed: list[ObservedInstance]) -> Prepared:
        """What the rollout plan (deployer/rollout.py's Plan) needs here; touches nothing."""

    def apply(self, service, prepared: Prepared) -> list[str]:
        """Makes the cluster match prepared.desired; returns what it created. PermanentError: cannot be done."""

    def restart_instance(self, service, instance_name: str) -> None: ...

    def delete(self, service) -> bool:
        """Stops everything the service runs; True once nothing is left (the service row may then go)."""

    def logs(self, service, instance_name: str, since: datetime | None, follow: bool) -> Iterator[str]: ...
