"""Who is looking, in which project, and what they may do: console-only reads on top of services.selectors."""

from functools import wraps

from django.http import Http404, HttpResponseForbidden
from django.template.loader import render_to_string

from services import selectors
from services.errors import Forbidden, NotFound
from services.models import Project, Service

SESSION_PROJECT = "ferry_project"


def current_project(request) -> Project | None:
    """The project chosen with the switcher (kept in the session); None means every project of the user."""
    name = request.session.get(SESSION_PROJECT) or ""
    if not name:
        return None
    return selectors.projects_of(request.user).filter(name=name).first()


def can_write(user, project: Project) -> bool:
    return selectors.role_in(user, project) in selectors.access.WRITE_ROLES


def writable_projects(user) -> list[Project]:
    return [project for project in selectors.projects_of(user) if can_write(user, project)]


def service_or_404(request, cluster_id: str, name: str, *, write: bool = False) -> Service:
    """The service if the user may see it (404 otherwise); with write=True, 403 unless they may change it."""
    try:
        return selectors.service_for(request.user, cluster_id, name, write=write)
    except NotFound as exc:
        raise Http404(exc.message) from None


def forbidden_page(request, message: str):
    body = render_to_string("console/forbidden.html", {"message": message}, request=request)
    return HttpResponseForbidden(body)


def forbidden_is_403(view):
    """Turns a Forbidden from selectors.require_write into a readable 403 page."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except Forbidden as exc:
            return forbidden_page(request, exc.message)

    return wrapped
