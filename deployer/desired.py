"""What should run: a pure function from the replicas each version should have (deployer/rollout.py decides
those) and what is observed, to named instance slots.

A version that is no longer wanted keeps enough of its *ready* instances that the service never has fewer
ready instances than asked for (max_unavailable 0), and gives them up one by one as the versions that replace
it become ready.
"""

from dataclasses import dataclass

from services.servicefile import dns_name


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


def desired_slots(*, service_name: str, running: bool, replicas: dict[int, int],
                  observed: list[ObservedSlot]) -> list[DesiredSlot]:
    """Slots for the replicas each version should have (from the rollout plan), plus old ready instances
    kept while the versions that replace them have too few ready ones."""
    if not running:
        return []
    wanted = {number: count for number, count in replicas.items() if count > 0}
    slots = [DesiredSlot(instance_name(service_name, number, index), number)
             for number, count in sorted(wanted.items()) for index in range(count)]
    return slots + _draining_slots(wanted, sum(wanted.values()), observed)


def _draining_slots(wanted: dict[int, int], total: int, observed: list[ObservedSlot]) -> list[DesiredSlot]:
    """Old versions' ready instances kept until the new ones can take over."""
    ready_new = sum(1 for slot in observed if slot.version in wanted and slot.ready)
    keep = max(0, min(total, sum(wanted.values())) - ready_new)
    old_ready = sorted((slot for slot in observed if slot.version not in wanted and slot.ready and slot.live),
                       key=lambda slot: (-slot.version, slot.name))
    return [DesiredSlot(slot.name, slot.version) for slot in old_ready[:keep]]
