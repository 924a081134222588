"""Waking a service from zero: a request waits in the gateway's activator while instances start."""

import logging

from django.db import transaction

from services.models import Service
from services.services import event_record

from .reconcile import reconcile
from .scale import activation_count, effective_instance_count

logger = logging.getLogger("ferry.deployer")


def activate(service_name: str, cluster_name: str) -> bool:
    """Raises a service at zero to its activation count and reconciles at once. True when it did."""
    with transaction.atomic():
        service = (Service.objects.select_for_update()
                   .filter(name=service_name, cluster__name=cluster_name, deletion_requested_at__isnull=True).first())
        if service is None or service.desired_state != "running":
            return False
        current = effective_instance_count(instance_count=service.instance_count, autoscaler=service.autoscaler,
                                           autoscaled=service.autoscaled_instances)
        if current > 0:
            return False
        service.autoscaled_instances = activation_count(service.autoscaler)
        service.save(update_fields=["autoscaled_instances", "updated_at"])
        event_record(service=service, reason="Activated",
                     message=f"Woke {service.name} from zero: a request arrived; starting "
                             f"{service.autoscaled_instances} instance(s)")
    reconcile(service.pk)
    return True
