"""The service timeline. Messages are in the past tense and name the object ("Created version 3 of demo")."""

import logging

from services.models import Event, EventType, Service

logger = logging.getLogger("ferry.events")


def event_record(*, service: Service, reason: str, message: str, warning: bool = False, instance_name: str = "") -> Event:
    event_type = EventType.WARNING if warning else EventType.NORMAL
    logger.log(logging.WARNING if warning else logging.INFO, "%s %s: %s", service, reason, message)
    return Event.objects.create(
        service=service, type=event_type, reason=reason, message=message, instance_name=instance_name
    )
