"""One reconcile of one service: observe, decide, apply, write status.

Issue order builds this up: until a cluster kind has a driver, a service's desired state is stored and its
status says, truthfully, that it is waiting for a cluster that can run it.
"""

import logging

from django.db import transaction
from django.utils import timezone

from services.models import Phase, Service

from .conditions import condition_set
from .drivers import driver_for

logger = logging.getLogger("ferry.deployer")


def reconcile(service_id: int) -> None:
    service = Service.objects.select_related("cluster").filter(pk=service_id).first()
    if service is None:
        return
    driver = driver_for(service.cluster)
    if driver is None:
        _without_driver(service)
        return
    # No driver is registered yet (the local and Kubernetes drivers come next), so every kind takes the
    # branch above; the observe -> desired -> apply loop for drivers lands with the first of them.


def _without_driver(service: Service) -> None:
    if service.deletion_requested_at is not None:
        # Nothing was ever applied to a cluster without a driver, so nothing remote needs removing.
        with transaction.atomic():
            Service.objects.filter(pk=service.pk).delete()
        logger.info("Deleted service %s (nothing was running)", service)
        return
    message = (
        f'No driver for clusters of kind "{service.cluster.kind}" is installed yet; '
        "the desired state is stored and will be applied when one is."
    )
    now = timezone.now()
    conditions = condition_set(service.conditions, type="Ready", status=False, reason="WaitingForCluster",
                               message=message, generation=service.generation, now=now)
    Service.objects.filter(pk=service.pk, generation=service.generation).update(
        phase=Phase.WAITING, status_reason="WaitingForCluster", status_message=message,
        conditions=conditions, observed_generation=service.generation, updated_at=now,
    )
