"""Waking a service from zero: a request waits in the gateway's activator while instances start; and what
happens when they never become ready (the service is marked Failed and stays at zero instead of looping)."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from services.activations import Activation, Verdict, activation_of, activation_verdict
from services.models import Service
from services.scale import activation_count, service_instance_count
from services.services import event_record


logger = logging.getLogger("ferry.deployer")


def activate(service_name: str, cluster_name: str) -> bool:
    """Raises a service at zero to its activation count and reconciles at once. True when it did."""
    from .reconcile import reconcile

    with transaction.atomic():
        service = (Service.objects.select_for_update()
                   .filter(name=service_name, cluster__name=cluster_name, deletion_requested_at__isnull=True).first())
        if service is None or service.desired_state != "running":
            return False
        last = activation_of(service.activation)
        if last is not None and last.failed_for(service.generation):
            logger.info("Not waking %s: its last wake-up failed (%s)", service, last.message)
            return False
        current = service_instance_count(service)
        if current > 0:
            return False
        service.autoscaled_instances = activation_count(service.autoscaler)
        service.activation = Activation.begin(generation=service.generation, now=timezone.now()).to_json()
        service.save(update_fields=["autoscaled_instances", "activation", "updated_at"])
        event_record(service=service, reason="Activated",
                     message=f"Woke {service.name} from zero: a request arrived; starting "
                             f"{service.autoscaled_instances} instance(s)")
    reconcile(service.pk)
    return True


def follow_activation(service: Service, observed) -> None:
    """Called by each reconcile: forgets a wake-up once an instance serves; past the deadline, fails it (back to
    zero, an ActivationFailed event; the status shows it until the service is changed)."""
    deadline = timedelta(seconds=settings.FERRY_ACTIVATION_DEADLINE_SECONDS)
    verdict = activation_verdict(service.activation, generation=service.generation,
                                 ready=any(o.ready for o in observed), now=timezone.now(), deadline=deadline)
    if verdict is Verdict.CLEAR:
        service.activation = None
        Service.objects.filter(pk=service.pk).update(activation=None)
    elif verdict is Verdict.EXPIRED:
        why = "; ".join(f"{o.name}: {o.last_exit_reason or o.state}" for o in observed) or "no instance started"
        message = (f"No instance of {service.name} became ready within {settings.FERRY_ACTIVATION_DEADLINE_SECONDS} s "
                   f"of its wake-up from zero ({why}); it stays at zero until the service is changed")
        service.activation = Activation.from_json(service.activation).fail(message).to_json()
        service.autoscaled_instances = 0
        Service.objects.filter(pk=service.pk).update(activation=service.activation, autoscaled_instances=0)
        event_record(service=service, reason="ActivationFailed", warning=True, message=message)
