"""The browser console. Views stay thin: reads through selectors, writes through services.services."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from services import selectors


@login_required
def home(request):
    services = selectors.services_list(request.user).prefetch_related("versions", "instances")
    context = {
        "services": services,
        "projects": selectors.projects_of(request.user),
        "clusters": selectors.clusters_list(),
    }
    return render(request, "console/home.html", context)
