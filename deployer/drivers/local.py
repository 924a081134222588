"""The local cluster: instances are processes on this host, run by the node agent from LocalInstance rows.

The driver never starts processes itself (Celery workers must not own long-running children): it writes the
desired rows, wakes the agent, and reads back what the agent reports.
"""

import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F

from contracts.keys import AGENT_WAKE_CHANNEL
from deployer.desired import ObservedSlot, desired_slots
from deployer.fetches import FetchPending
from deployer.launches import limits_message, token_env, version_launch
from deployer.models import LocalInstance, LocalInstanceState
from services.models import Version
from services.writes import event_record

from .base import Observed, ObservedInstance, PermanentError, Prepared

logger = logging.getLogger("ferry.deployer")


class LocalDriver:
    def __init__(self, cluster):
        self.cluster = cluster

    def observe(self, service) -> Observed:
        rows = LocalInstance.objects.filter(service=service).order_by("name")
        return Observed(instances=[_observed(row) for row in rows])

    def prepare(self, service, plan, observed: list[ObservedInstance]) -> Prepared:
        """Named instance slots for the plan (deployer/desired.py) and a launch spec for each. Slots whose version
        waits for its files count as expected (the service is not Running without them) but are not launched."""
        slots = desired_slots(
            service_name=service.name, running=service.desired_state == "running", replicas=plan.replicas,
            observed=[ObservedSlot(o.name, o.version, o.ready, o.state not in ("Terminated", "Failed"))
                      for o in observed],
        )
        by_version, failures, fetching = _launches(service, list(dict.fromkeys(slot.version for slot in slots)))
        desired = [(slot.name, slot.version, by_version[slot.version]) for slot in slots if slot.version in by_version]
        names = frozenset(name for name, _, _ in desired) | {slot.name for slot in slots if slot.version in fetching}
        return Prepared(desired=desired, expected=len(names), failures=failures, fetching=fetching, names=names)

    @transaction.atomic
    def apply(self, service, prepared: Prepared) -> list[str]:
        """Makes the rows match the prepared [(name, version, launch)]. Returns the names of new instances."""
        rows = {row.name: row for row in LocalInstance.objects.select_for_update().filter(service=service)}
        wanted = {name: (version, launch) for name, version, launch in prepared.desired}
        created = []
        for name, (version, launch) in wanted.items():
            row = rows.get(name)
            if row is None:
                LocalInstance.objects.create(service=service, name=name, version_number=version, launch=launch)
                created.append(name)
            else:
                _keep_running(row, launch)
        for name, row in rows.items():
            if name not in wanted:
                _retire(row)
        transaction.on_commit(_wake_agent)  # waking it before the rows commit would show it the old ones
        return created

    def delete(self, service) -> bool:
        """Stops every instance; True once none is left (the finalizer may then delete the service)."""
        for row in LocalInstance.objects.filter(service=service):
            _retire(row)
        transaction.on_commit(_wake_agent)
        return not LocalInstance.objects.filter(service=service).exists()

    def restart_instance(self, service, instance_name: str) -> None:
        LocalInstance.objects.filter(service=service, name=instance_name).update(
            restart_generation=F("restart_generation") + 1
        )
        transaction.on_commit(_wake_agent)

    def logs(self, service, instance_name: str, since: datetime | None, follow: bool) -> Iterator[str]:
        row = LocalInstance.objects.filter(service=service, name=instance_name).first()
        path = Path(row.log_path) if row and row.log_path else instance_log_path(instance_name)
        rotated = [path.with_name(f"{path.name}.{n}") for n in (3, 2, 1)]  # the agent keeps three generations
        for candidate in (*rotated, path):
            if candidate.exists():
                with candidate.open(errors="replace") as handle:
                    for line in handle:
                        yield line.rstrip("\n")


def _launches(service, versions: list[int]):
    """A launch spec per version; the versions that cannot be launched, with why; and those whose files are
    still being fetched (their slots wait, the rest of the service goes on), with what is fetched."""
    restart_token = service.restart_requested_at.isoformat() if service.restart_requested_at else ""
    in_use = _launches_in_use(service)
    by_version: dict[int, dict] = {}
    failures: dict[int, PermanentError] = {}
    fetching: dict[int, str] = {}
    for number in versions:
        try:
            by_version[number] = _launch_for(service, number, in_use, restart_token)
        except PermanentError as exc:
            failures[number] = exc
        except FetchPending as pending:
            fetching[number] = pending.url
        except Version.DoesNotExist:
            logger.info("Version %s of %s is gone (pruned); not launching it", number, service)
    return by_version, failures, fetching


def _launches_in_use(service) -> dict[int, dict]:
    """Launch specs already written per version: reused, so a version's instances all run the same files."""
    launches = {}
    for row in LocalInstance.objects.filter(service=service).order_by("-created_at"):
        launches.setdefault(row.version_number, row.launch)
    return launches


def _launch_for(service, number: int, in_use: dict[int, dict], restart_token: str) -> dict:
    if number in in_use:
        launch = {**in_use[number], "restart_token": restart_token}
        if launch.get("token_sha256") != token_env(service)["token_sha256"]:
            launch.update(token_env(service))  # the token was rotated: instances restart with the new one
        return launch
    version = service.versions.get(number=number)
    launch = version_launch(service, version, restart_token=restart_token)
    event_record(service=service, reason="AppliedLimits", message=limits_message(service, version))
    return launch


def instance_log_path(instance_name: str) -> Path:
    return Path(settings.VAR_DIR) / "instances" / instance_name / "instance.log"


def _observed(row: LocalInstance) -> ObservedInstance:
    return ObservedInstance(
        name=row.name, version=row.version_number, state=row.state,
        ready=row.ready and row.desired == "running", host="127.0.0.1" if row.port else "", port=row.port,
        restart_count=row.restart_count, last_exit_reason=row.last_exit_reason, started_at=row.started_at,
    )


def _keep_running(row: LocalInstance, launch: dict) -> None:
    changed = []
    if row.desired != "running":
        row.desired = "running"
        changed.append("desired")
    if row.launch != launch:
        # Versions are immutable, so only the restart token can differ: restart gracefully.
        row.launch = launch
        row.restart_generation += 1
        changed += ["launch", "restart_generation"]
    if changed:
        row.save(update_fields=changed)


def _retire(row: LocalInstance) -> None:
    if row.state == LocalInstanceState.TERMINATED or (row.desired == "stopped" and row.pid is None
                                                        and row.state in (LocalInstanceState.PENDING,
                                                                          LocalInstanceState.FAILED)):
        row.delete()
    elif row.desired != "stopped":
        row.desired = "stopped"
        row.save(update_fields=["desired"])


def _wake_agent() -> None:
    """The agent polls anyway; this only makes it react at once."""
    if not settings.REDIS_URL:
        return
    try:
        import redis

        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1).publish(AGENT_WAKE_CHANNEL, "1")
    except Exception as exc:  # noqa: BLE001 -- a missed wake-up only costs one poll period
        logger.warning("Could not wake the node agent: %s", exc)
