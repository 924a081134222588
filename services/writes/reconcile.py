"""How a write asks the deployer to act: once the transaction commits, never inside it."""

from services.models import Service
from services.ports import deployer


def reconcile_request(service: Service) -> None:
    deployer().reconcile_soon(service.pk)
