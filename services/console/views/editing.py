"""Create and edit a service, from the form of common fields or from a whole service file.

Validation is the domain's (services.writes.service_create / service_update, as the API): nothing is
created when it fails, and its errors come back by JSON path, beside the field or on the file's listing.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect

from django.urls import reverse

from services import selectors
from services import writes
from services.api.presenters import service_config
from services.errors import FerryError
from services.selectors.grants import clusters_visible_to
from services.servicefile import ServiceFileError

from ..rendering import render
from ..access import current_project, forbidden_is_403, forbidden_page, service_or_404, writable_projects
from ..documents import annotated, pretty
from ..forms import ServiceFileForm, ServiceForm

MODES = ("form", "file")
EXAMPLE_FILE = {
    "name": "my_model",
    "processor": "sklearn",
    "model_path": "file:///path/to/model_dir/",
    "metadata": {"instance": 1, "cpu": 1, "memory": 1024},
}


def _mode(request) -> str:
    mode = request.POST.get("mode") or request.GET.get("mode") or "form"
    return mode if mode in MODES else "form"


def _service_url(service) -> str:
    return reverse("console:service", args=[service.cluster.name, service.name])


@login_required
@forbidden_is_403
def service_create(request):
    projects = writable_projects(request.user)
    if not projects:
        return forbidden_page(request, "You belong to no project you may change; ask an owner to add you to one.")
    chosen = current_project(request)
    initial_project = chosen.name if chosen and chosen in projects else projects[0].name
    mode = _mode(request)
    form_kwargs = {"projects": projects, "clusters": clusters_visible_to(request.user)}
    service_form = ServiceForm(initial={"project": initial_project, "instances": 1, "cpu": 1, "memory": 1024},
                               **form_kwargs)
    file_form = ServiceFileForm(initial={"project": initial_project, "text": pretty(EXAMPLE_FILE)},
                                projects=projects)
    if request.method == "POST":
        if mode == "form":
            service_form = ServiceForm(request.POST, **form_kwargs)
            bound = service_form
            document = service_form.document() if service_form.is_valid() else None
        else:
            file_form = ServiceFileForm(request.POST, request.FILES, projects=projects)
            bound = file_form
            document = file_form.document if file_form.is_valid() and not file_form.has_path_errors else None
        if document is not None:
            try:
                project = selectors.project_for_write(request.user, bound.cleaned_data["project"])
                service = writes.service_create(actor=request.user, project=project, document=document)
            except (ServiceFileError, FerryError) as exc:
                bound.add_path_errors(exc)
            else:
                messages.success(request, f"Created service {service.name}. It is starting now.")
                return redirect(_service_url(service))
    return _render_editor(request, "console/services/create.html", mode, service_form, file_form, status=_status(request))


@login_required
@forbidden_is_403
def service_edit(request, cluster_id: str, name: str):
    service = service_or_404(request, cluster_id, name)
    selectors.require_write(request.user, service.project)
    mode = _mode(request)
    config = service_config(service)
    service_form = ServiceForm(initial=ServiceForm.initial_from(service.spec, service.instance_count), editing=True)
    file_form = ServiceFileForm(initial={"text": pretty(config)})
    if request.method == "POST":
        if mode == "form":
            service_form = ServiceForm(request.POST, editing=True)
            bound, patch, update_type = service_form, None, "merge"
            if service_form.is_valid():
                patch = service_form.document()
        else:
            file_form = ServiceFileForm(request.POST, request.FILES)
            bound, patch, update_type = file_form, None, "replace"
            if file_form.is_valid() and not file_form.has_path_errors:
                patch = file_form.document
        if patch is not None:
            try:
                writes.service_update(actor=request.user, service=service, patch=patch, update_type=update_type)
            except (ServiceFileError, FerryError) as exc:
                bound.add_path_errors(exc)
            else:
                messages.success(request, f"Updated service {service.name}.")
                return redirect(_service_url(service))
    context = {"service": service}
    return _render_editor(request, "console/services/edit.html", mode, service_form, file_form,
                          status=_status(request), extra=context)


def _status(request) -> int:
    return 422 if request.method == "POST" else 200


def _render_editor(request, template, mode, service_form, file_form, *, status, extra=None):
    listing = None
    if file_form.is_bound and file_form.document is not None and file_form.path_errors:
        listing = annotated(file_form.document, file_form.path_errors)
    context = {"mode": mode, "service_form": service_form, "file_form": file_form, "listing": listing,
               "file_errors": file_form.path_errors if file_form.is_bound else [], **(extra or {})}
    return render(request, template, context, status=status)
