"""The service timeline. Messages are in the past tense and name the object ("Created version 3 of demo").

A user's write passes its `actor` (the User); the event keeps their username. The deployer's own events (reconcile,
autoscaler, agent, activation) pass none and stay blank: the system acted."""

import logging

from services.models import Event, EventType, Service

logger = logging.getLogger("ferry.events")


def actor_name(actor) -> str:
    """The username of a User, "" for the system (None) or an anonymous user."""
    return actor.get_username() if actor is not None else ""


def event_record(*, service: Service, reason: str, message: str, warning: bool = False, instance_name: str = "",
                 actor=None) -> Event:
    event_type = EventType.WARNING if warning else EventType.NORMAL
    username = actor_name(actor)
    logger.log(logging.WARNING if warning else logging.INFO, "%s %s: %s%s", service, reason, message,
               f" (by {username})" if username else "")
    return Event.objects.create(
        service=service, type=event_type, reason=reason, message=message, instance_name=instance_name,
        actor=username,
    )
