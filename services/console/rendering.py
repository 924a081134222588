"""render() for console pages: adds what the layout needs (the project switcher) to every page's context."""

from django.shortcuts import render as django_render

from services import selectors

from .access import current_project


def layout_context(request) -> dict:
    if not request.user.is_authenticated:
        return {}
    return {"switcher_projects": selectors.projects_of(request.user),
            "switcher_current": current_project(request),
            "switcher_next": request.get_full_path()}


def render(request, template: str, context: dict | None = None, status: int = 200):
    return django_render(request, template, {**layout_context(request), **(context or {})}, status=status)
