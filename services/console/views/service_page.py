"""The service page: a header with live status, and tabs. One view serves the page and each of its fragments
(the polled status header, a tab's panel, the log lines, the charts), chosen by the htmx target."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe

from ..rendering import render
from ..access import can_write, service_or_404
from ..mesh import mesh_panel
from .base import POLL_SECONDS, fragment, progress, wants_fragment
from .tabs import LIVE_TABS, TABS, log_filters, log_lines


def page_context(request, service, tab: str, **extra) -> dict:
    title, build = TABS[tab]
    state = progress(service)
    return {
        "service": service,
        "tab": tab,
        "tab_title": title,
        "tabs": [(name, label) for name, (label, _) in TABS.items()],
        "progress": state,
        "may_write": can_write(request.user, service.project),
        "conditions": service.conditions or [],
        "event_count": service.events.count(),
        "version_count": service.versions.count(),
        "poll_seconds": POLL_SECONDS,
        "polling": state.moving,
        **build(request, service, **extra),
        **extra,
    }


def render_tab(request, service, tab: str, *, status: int = 200, **extra):
    """The whole page on that tab (after an action, with its bound forms or answer in `extra`)."""
    return render(request, "console/service/page.html", page_context(request, service, tab, **extra), status=status)


@login_required
@require_safe
def service_page(request, cluster_id: str, name: str, tab: str = "overview"):
    if tab not in TABS:
        raise Http404(f"No tab {tab}.")
    service = service_or_404(request, cluster_id, name)
    if wants_fragment(request, "service-status"):
        context = _status_context(request, service)
        return fragment(request, "console/service/_status.html", context, moving=context["progress"].moving)
    if tab in LIVE_TABS and wants_fragment(request, "live-part"):
        context = page_context(request, service, tab)
        return fragment(request, f"console/service/tabs/_{tab}_live.html", context, moving=context["polling"])
    if tab == "logs" and wants_fragment(request, "log-lines"):
        context = page_context(request, service, tab)
        return render(request, "console/service/tabs/_log_lines.html", {**context, "polling": context["filters"]["tail"]})
    if tab == "overview" and wants_fragment(request, "mesh-part"):  # the model mesh panel polls on its own
        panel = mesh_panel(service)
        if panel["mesh"] is None:
            raise Http404(f"{service.name} is not in the model mesh.")
        return render(request, "console/service/tabs/_mesh.html", {"service": service, **panel})
    if tab == "monitoring" and wants_fragment(request, "charts"):
        return render(request, "console/service/tabs/_charts.html", page_context(request, service, tab))
    return render_tab(request, service, tab)


def _status_context(request, service) -> dict:
    state = progress(service)
    return {"service": service, "progress": state, "conditions": service.conditions or [],
            "event_count": service.events.count(), "version_count": service.versions.count(),
            "may_write": can_write(request.user, service.project)}


@login_required
@require_safe
def logs_download(request, cluster_id: str, name: str):
    service = service_or_404(request, cluster_id, name)
    filters = log_filters(request)
    lines = log_lines(service, filters)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = HttpResponse("\n".join(lines) + ("\n" if lines else ""), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{service.name}-{stamp}.log"'
    return response
