"""The service list (with its polled table), the project switcher and the clusters page."""

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect

from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from services import selectors
from services.api.presenters import predict_url
from services.models import Phase, Service
from services.selectors.grants import clusters_visible_to

from .. import metrics
from ..rendering import render
from ..access import SESSION_PROJECT, current_project, writable_projects
from ..resources import cluster_views
from .base import POLL_SECONDS, Progress, fragment, progress, wants_fragment


@dataclass
class Row:
    service: Service
    progress: Progress
    live: metrics.Live | None
    endpoint: str

    @property
    def busy(self) -> bool:
        """Moving, or serving traffic: either way its numbers are changing."""
        return self.progress.moving or bool(self.live and self.live.qps)


def _filters(request) -> dict:
    return {"q": request.GET.get("q", "").strip(), "status": request.GET.get("status", ""),
            "cluster": request.GET.get("cluster", "")}


@login_required
@require_safe
def service_list(request):
    project = current_project(request)
    filters = _filters(request)
    services = list(selectors.services_list(
        request.user, name_contains=filters["q"], status=filters["status"], cluster=filters["cluster"],
        project=project.name if project else "",
    ).prefetch_related("versions", "instances"))
    live = metrics.live_summaries([(s.cluster.name, s.name, [v.number for v in s.versions.all()]) for s in services])
    rows = [Row(s, progress(s, list(s.instances.all())), live.get((s.cluster.name, s.name)), predict_url(s.name))
            for s in services]
    context = {
        "rows": rows,
        "filters": filters,
        "phases": Phase.values,
        "clusters": clusters_visible_to(request.user),
        "running_count": sum(1 for row in rows if row.service.phase == Phase.RUNNING),
        "may_create": bool(writable_projects(request.user)),
        "poll_url": request.get_full_path(),
        "poll_seconds": POLL_SECONDS,
        "polling": any(row.busy for row in rows),
    }
    if wants_fragment(request, "service-table"):
        return fragment(request, "console/services/_table.html", context, moving=context["polling"])
    return render(request, "console/services/list.html", context)


@login_required
@require_POST
def project_switch(request):
    """Remembers the chosen project in the session ("" shows every project of the user). Not a domain write."""
    name = request.POST.get("project", "")
    if name and not selectors.projects_of(request.user).filter(name=name).exists():
        name = ""
    request.session[SESSION_PROJECT] = name
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = reverse("console:home")
    return redirect(back)


@login_required
@require_safe
def clusters(request):
    visible: dict[int, list[Service]] = {}
    for service in selectors.services_list(request.user).prefetch_related("instances"):
        visible.setdefault(service.cluster_id, []).append(service)
    return render(request, "console/clusters.html", {"cluster_views": cluster_views(request.user, visible)})
