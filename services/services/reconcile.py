"""How a write asks the deployer to act: once the transaction commits, never inside it."""

from django.db import transaction

from services.models import Service


def reconcile_request(service: Service) -> None:
    # Imported late: the deployer app depends on services, not the other way round at import time.
    from deployer.tasks import reconcile_service

    service_id = service.pk
    transaction.on_commit(lambda: reconcile_service.delay(service_id))
