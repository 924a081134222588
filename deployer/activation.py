"""Waking a service from zero: a request waits in the gateway's activator while instances start. Each reconcile
then follows the wake-up (deployer/reconcile.py, `_follow_activation`): what happens when instances never become
ready (the service is marked Failed and stays at zero instead of looping)."""

import logging

from django.db import transaction
from django.utils import timezone

from services.activations import Activation, activation_of
from services.models import Service
from services.scale import activation_count, service_instance_count
from services.writes import event_record

from .mesh.placer import place_for_request
from .reconcile import reconcile

logger = logging.getLogger("ferry.deployer")


def activate(service_name: str, cluster_name: str) -> bool:
    """Raises a service at zero to its activation count and reconciles at once. True when it did. A model in a
    pool (docs/mesh.md) is never at zero: a request found it loaded nowhere, and the placer loads it now."""
    model = (Service.objects.select_related("cluster")
             .filter(name=service_name, cluster__name=cluster_name, deletion_requested_at__isnull=True,
                     desired_state="running", spec__metadata__pool__isnull=False).first())
    if model is not None:
        return place_for_request(model)
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
