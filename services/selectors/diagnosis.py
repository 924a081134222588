"""Gathers what the diagnosis rules (diagnosis_rules.py, pure) look at: the service's recorded status, its
instances, their exits and the last lines they logged."""

from datetime import datetime

from django.conf import settings
from django.utils import timezone

from services.errors import NotFound
from services.models import Instance, Service
from services.ports import deployer
from services.rollouts import rollout_of, service_progress_deadline

from .diagnosis_rules import (
    CRASHING_STATES,
    LOG_LINES_SHOWN,
    Finding,
    InstanceFacts,
    ServiceFacts,
    diagnose_instance,
    diagnose_service,
)


def service_diagnosis(service: Service) -> list[Finding]:
    return diagnose_service(service_facts(service), now=timezone.now(), deadline_seconds=deadline_seconds(service))


def instance_diagnosis(service: Service, instance_name: str) -> Finding | None:
    instance = service.instances.filter(name=instance_name).first()
    if instance is None:
        raise NotFound(f"No instance named {instance_name} in service {service.name}.", code="InstanceNotFound")
    return diagnose_instance(_instance_facts(service, instance, _exit_codes(service)), now=timezone.now(),
                             deadline_seconds=deadline_seconds(service))


def deadline_seconds(service: Service) -> int:
    """The deadline the reconciler holds the service to: its file's, else the installation's."""
    return int(service_progress_deadline(service.spec, settings.FERRY_PROGRESS_DEADLINE_SECONDS,
                                         settings.FERRY_LLM_PROGRESS_DEADLINE_SECONDS).total_seconds())


def service_facts(service: Service) -> ServiceFacts:
    exit_codes = _exit_codes(service)
    instances = tuple(_instance_facts(service, instance, exit_codes) for instance in service.instances.order_by("name"))
    return ServiceFacts(
        name=service.name, phase=service.phase, running=service.desired_state == "running",
        reason=service.status_reason, message=service.status_message, conditions=tuple(service.conditions or ()),
        rollout=rollout_of(service.rollout), instances=instances,
    )


def _instance_facts(service: Service, instance: Instance, exit_codes: dict[str, int | None]) -> InstanceFacts:
    crashing = instance.state in CRASHING_STATES
    return InstanceFacts(
        name=instance.name, state=instance.state, ready=instance.ready, restart_count=instance.restart_count,
        exit_code=exit_codes.get(instance.name), exit_reason=instance.last_exit_reason,
        since=instance.started_at or _progressing_since(service),
        log_tail=log_tail(service, instance.name) if crashing else (),
    )


def _exit_codes(service: Service) -> dict[str, int | None]:
    """The node agent records exit codes of local instances; other clusters report a reason only."""
    return {name: process.last_exit_code for name, process in deployer().local_processes(service).items()}


def _progressing_since(service: Service) -> datetime | None:
    """When an instance that has not started was asked for: when the service began progressing."""
    progressing = next((c for c in service.conditions or () if c.get("type") == "Progressing"
                        and c.get("status") == "True"), None)
    return datetime.fromisoformat(progressing["last_transition_time"]) if progressing else None


def log_tail(service: Service, instance_name: str, lines: int = LOG_LINES_SHOWN) -> tuple[str, ...]:
    """The last lines the instance's program wrote, without the node agent's own notes."""
    return deployer().program_log_tail(service, instance_name, lines)
