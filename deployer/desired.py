"""What should run: a pure function from a service's desired state and what is observed to instance slots.

Rolling update (the default): a version with traffic gets its share of the instances; a version that lost
its traffic keeps enough of its *ready* instances that the service never has fewer ready instances than asked
for (max_unavailable 0), and gives them up one by one as the new version's instances become ready.
"""

import math
from dataclasses import dataclass

from services.servicefile import dns_name


@dataclass(frozen=True)
class VersionState:
    number: int
    weight: int
    service_file: dict


@dataclass(frozen=True)
class ObservedSlot:
    name: str
    version: int
    ready: bool
    live: bool  # a process exists or is being started (not Terminated / Failed)


@dataclass(frozen=True)
class DesiredSlot:
    name: str
    version: int


def instance_name(service_name: str, version: int, index: int) -> str:
    return f"{dns_name(service_name)}-v{version}-{index}"


def replicas_by_version(versions: list[VersionState], total: int) -> dict[int, int]:
    """Splits `total` instances over the versions with traffic, by weight; each such version gets at least one."""
    serving = [v for v in versions if v.weight > 0]
    if total <= 0 or not serving:
        return {}
    return {v.number: max(1, math.ceil(total * v.weight / 100)) for v in serving}


def desired_slots(*, service_name: str, running: bool, total: int, versions: list[VersionState],
                  observed: list[ObservedSlot]) -> list[DesiredSlot]:
    if not running:
        return []
    wanted = replicas_by_version(versions, total)
    slots = [DesiredSlot(instance_name(service_name, number, index), number)
             for number, count in sorted(wanted.items()) for index in range(count)]
    return slots + _draining_slots(wanted, total, observed)


def _draining_slots(wanted: dict[int, int], total: int, observed: list[ObservedSlot]) -> list[DesiredSlot]:
    """Old versions' ready instances kept until the new ones can take over."""
    ready_new = sum(1 for slot in observed if slot.version in wanted and slot.ready)
    keep = max(0, min(total, sum(wanted.values())) - ready_new)
    old_ready = sorted((slot for slot in observed if slot.version not in wanted and slot.ready and slot.live),
                       key=lambda slot: (-slot.version, slot.name))
    return [DesiredSlot(slot.name, slot.version) for slot in old_ready[:keep]]
