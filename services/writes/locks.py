"""EAS UpdateServiceSafetyLock. What each level refuses is an access rule: services.selectors.locks."""

from django.db import transaction

from services.errors import InvalidRequest
from services.models import Service
from services.selectors.locks import LOCK_LEVELS

from .events import event_record


@transaction.atomic
def service_safety_lock_update(*, actor, service: Service, lock: object) -> Service:
    """Sets the lock. Not a change of desired state: nothing runs differently, so no generation moves."""
    if lock not in LOCK_LEVELS:
        raise InvalidRequest.at("Lock", f"must be one of {', '.join(LOCK_LEVELS)}")
    service = Service.objects.select_for_update().get(pk=service.pk)
    if service.safety_lock == lock:
        return service
    event_record(service=service, reason="SetSafetyLock",
                 message=f'Set the safety lock of {service.name} to "{lock}" (was "{service.safety_lock}")',
                 actor=actor)
    service.safety_lock = lock
    service.save(update_fields=["safety_lock", "updated_at"])
    return service
