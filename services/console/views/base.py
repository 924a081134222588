"""What the console views share: telling a page request from an htmx fragment request, and when to stop polling."""

from dataclasses import dataclass

from django_htmx.http import HTMX_STOP_POLLING

from services.models import Service
from services.scale import service_instance_count

from ..rendering import render

# Phases a service rests in; anything else (Creating, Waiting, Scaling, Updating, Deleting) is on its way.
RESTING_PHASES = {"Running", "Stopped", "Failed"}
POLL_SECONDS = 2


def wants_fragment(request, target: str) -> bool:
    """netbox style: one view serves a page and, to htmx asking for one element (HX-Target), that element."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted and htmx.target == target


def fragment(request, template: str, context: dict, *, moving: bool, status: int = 200):
    """A polled fragment: while something is moving it polls again; once at rest it answers HTTP 286,
    which makes htmx stop polling (and it renders without its polling trigger)."""
    context = {**context, "polling": moving, "poll_seconds": POLL_SECONDS, "oob": True}
    response = render(request, template, context, status=status)
    if not moving and status == 200:
        response.status_code = HTMX_STOP_POLLING
    return response


def desired_instances(service: Service) -> int:
    if service.desired_state != "running" or service.deletion_requested_at is not None:
        return 0
    return service_instance_count(service)


@dataclass
class Progress:
    ready: int
    total: int
    desired: int
    moving: bool


def progress(service: Service, instances=None) -> Progress:
    """Ready / desired instances, and whether the service is still on its way somewhere."""
    instances = list(service.instances.all()) if instances is None else instances
    ready = sum(1 for instance in instances if instance.ready)
    desired = desired_instances(service)
    at_rest = (
        service.phase in RESTING_PHASES
        and service.observed_generation >= service.generation
        and service.deletion_requested_at is None
        and (service.phase != "Running" or (ready == desired and len(instances) == desired))
    )
    return Progress(ready=ready, total=len(instances), desired=desired, moving=not at_rest)
