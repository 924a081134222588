"""Every POST on a service page. Thin: a form shapes the input, one services.writes function does the write
(the same one the API calls), and the page comes back with the outcome, or with the errors beside the fields.

Each write is recorded by the domain as an event, which the page then shows (versions and scaling tabs list
the recent ones; the events tab has them all).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect

from django.urls import reverse
from django.views.decorators.http import require_POST

from services import selectors
from services import writes
from services.errors import FerryError, InvalidRequest
from contracts.rollouts import promote_action

from .. import chat, invoke
from ..rendering import render
from ..access import forbidden_is_403, service_or_404
from ..forms import AutoscalerForm, CanaryForm, CronScalerForm, InvokeForm, MirrorForm, ScaleForm, WeightsForm
from .service_page import render_tab
from .tabs import traffic_versions


def _back(service, tab: str = "overview"):
    if tab == "overview":
        return redirect(reverse("console:service", args=[service.cluster.name, service.name]))
    return redirect(reverse("console:service-tab", args=[service.cluster.name, service.name, tab]))


def _done(request, service, tab: str, message: str):
    messages.success(request, message)
    return _back(service, tab)


def _failed(request, service, tab: str, exc: FerryError):
    details = "; ".join(f"{e['Path']}: {e['Message']}" for e in exc.errors) if exc.errors else exc.message
    messages.error(request, details)
    return _back(service, tab)


def _with_form(request, service, tab: str, key: str, form, write, message: str):
    """Validates `form`, calls `write(form)`; on any error re-renders the tab with the form and its errors."""
    if form.is_valid():
        try:
            write(form)
        except FerryError as exc:
            if hasattr(form, "add_path_errors"):
                form.add_path_errors(exc)
            else:
                form.add_error(None, "; ".join(f"{e['Path']}: {e['Message']}" for e in exc.errors) or exc.message)
        else:
            return _done(request, service, tab, message)
    return render_tab(request, service, tab, status=422, forms={key: form})


def lifecycle(verb: str, write_name: str, message: str):
    def action(request, service):
        getattr(writes, write_name)(actor=request.user, service=service)
        if write_name == "service_delete":
            messages.success(request, message.format(name=service.name))
            return redirect(reverse("console:home"))
        return _done(request, service, "overview", message.format(name=service.name))

    action.__name__ = verb
    return action


def weights(request, service):
    form = WeightsForm(request.POST, versions=selectors.versions_of(service))
    return _with_form(request, service, "versions", "weights", form,
                      lambda f: writes.version_weights_set(actor=request.user, service=service, weights=f.weights()),
                      "Traffic weights set.")


def canary(request, service):
    _, newest, _ = traffic_versions(service)

    def write(form):
        # What a canary does (and its refusal during a rolling or blue-green rollout) is the write's decision.
        writes.canary_set(actor=request.user, service=service, percent=form.cleaned_data["percent"])

    form = CanaryForm(request.POST)
    percent = request.POST.get("percent", "?")
    return _with_form(request, service, "versions", "canary", form, write,
                      f"Canary set: v{newest.number if newest else '?'} gets {percent} %.")


def promote(request, service):
    _, newest, _ = traffic_versions(service)
    if promote_action((service.rollout or {}).get("state")) == "promote":
        writes.rollout_promote(actor=request.user, service=service)
        return _done(request, service, "versions", f"Promoted v{newest.number}: it takes all traffic as it is ready.")
    writes.version_weights_set(actor=request.user, service=service, weights={newest.number: 100})
    return _done(request, service, "versions", f"Promoted v{newest.number}: it takes all traffic.")


def rollback(request, service):
    number = request.POST.get("number")
    if number:
        if not str(number).isdigit():
            raise InvalidRequest.at("number", "must be a version number")
        writes.version_rollback(actor=request.user, service=service, number=int(number))
        return _done(request, service, "versions", f"Rolled back to v{number}.")
    writes.rollout_rollback(actor=request.user, service=service)
    return _done(request, service, "versions", "Rolled back to the last rolled-out version.")


def blue_green(name: str, message: str):
    def action(request, service):
        getattr(writes, name)(actor=request.user, service=service)
        return _done(request, service, "versions", message)

    action.__name__ = name
    return action


def mirror(request, service):
    form = MirrorForm(request.POST)
    return _with_form(request, service, "versions", "mirror", form,
                      lambda f: writes.mirror_set(actor=request.user, service=service, targets=f.target_list(),
                                                  ratio=f.cleaned_data["ratio"]), "Mirror set.")


def mirror_delete(request, service):
    writes.mirror_delete(actor=request.user, service=service)
    return _done(request, service, "versions", "Mirror removed.")


def scale(request, service):
    form = ScaleForm(request.POST)
    return _with_form(request, service, "scaling", "scale", form,
                      lambda f: writes.service_scale(actor=request.user, service=service,
                                                     instances=f.cleaned_data["instances"]),
                      f"Scaling to {request.POST.get('instances')} instance(s).")


def autoscaler(request, service):
    form = AutoscalerForm(request.POST)
    return _with_form(request, service, "scaling", "autoscaler", form,
                      lambda f: writes.autoscaler_set(actor=request.user, service=service, autoscaler=f.autoscaler()),
                      "Autoscaler set.")


def autoscaler_delete(request, service):
    writes.autoscaler_delete(actor=request.user, service=service)
    return _done(request, service, "scaling", "Autoscaler removed.")


def cron(request, service):
    form = CronScalerForm(request.POST)
    return _with_form(request, service, "scaling", "cron", form,
                      lambda f: writes.cron_scaler_set(actor=request.user, service=service,
                                                       scale_jobs=f.cleaned_data["jobs"],
                                                       exclude_dates=f.cleaned_data["exclude_dates"]),
                      "Cron scaler set.")


def cron_delete(request, service):
    writes.cron_scaler_delete(actor=request.user, service=service)
    return _done(request, service, "scaling", "Cron scaler removed.")


def instance_restart(request, service):
    name = request.POST.get("instance", "")
    if not selectors.instances_of(service).filter(name=name).exists():
        raise Http404(f"No instance named {name} in service {service.name}.")  # an id not of this service
    writes.service_instances_restart(actor=request.user, service=service, instance_names=[name])
    return _done(request, service, "instances", f"Restarting instance {name}.")


def token(request, service):
    """Shows the service token on demand (a POST, so never in a page nobody asked for). Not a write."""
    secret = selectors.service_token(service)
    if request.htmx:
        return render(request, "console/service/_token.html", {"service": service, "token": secret})
    return render_tab(request, service, "overview", token=secret)


def invoke_request(request, service):
    """Sends a test request from the server and shows the answer and its latency. Not a write."""
    form = InvokeForm(request.POST)
    answer = None
    if form.is_valid():
        answer = invoke.send(service, form.cleaned_data["body"], form.cleaned_data["protocol"],
                             form.cleaned_data["instance"])
    if request.htmx:
        return render(request, "console/service/tabs/_invoke_result.html", {"answer": answer, "invoke_form": form},
                      status=200 if answer else 422)
    return render_tab(request, service, "invoke", forms={"invoke": form}, answer=answer)


def chat_stream(request, service):
    """The chat playground: relays the conversation to the service through the gateway and streams its answer
    back as it comes (services/console/chat.py). Not a write."""
    try:
        body = chat.chat_body(service, request.body)
    except InvalidRequest as exc:
        return JsonResponse({"error": {"message": str(exc)}}, status=400)
    answer = chat.relay(service, body)
    response = StreamingHttpResponse(answer.chunks, status=answer.status, content_type=answer.content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a reverse proxy in front of the console must not hold the tokens
    return response


ACTIONS = {
    "start": lifecycle("start", "service_start", "Starting {name}."),
    "stop": lifecycle("stop", "service_stop", "Stopping {name}."),
    "restart": lifecycle("restart", "service_restart", "Restarting {name}."),
    "delete": lifecycle("delete", "service_delete", "Deleting {name}."),
    "weights": weights,
    "canary": canary,
    "promote": promote,
    "rollback": rollback,
    "switch": blue_green("rollout_switch", "Switched traffic to the green version."),
    "finish": blue_green("rollout_finish", "Finished the rollout."),
    "mirror": mirror,
    "mirror-delete": mirror_delete,
    "scale": scale,
    "autoscaler": autoscaler,
    "autoscaler-delete": autoscaler_delete,
    "cron": cron,
    "cron-delete": cron_delete,
    "instance-restart": instance_restart,
    "token": token,
    "invoke": invoke_request,
    "chat": chat_stream,
}
# POSTs that change nothing (they read on demand, behind CSRF); every other action is a domain write.
READ_ACTIONS = {"token", "invoke", "chat"}
ACTION_TABS = {"weights": "versions", "canary": "versions", "promote": "versions", "rollback": "versions",
               "switch": "versions", "finish": "versions", "mirror": "versions", "mirror-delete": "versions",
               "scale": "scaling", "autoscaler": "scaling", "autoscaler-delete": "scaling", "cron": "scaling",
               "cron-delete": "scaling", "instance-restart": "instances"}


@login_required
@require_POST
@forbidden_is_403
def service_action(request, cluster_id: str, name: str, action: str):
    handler = ACTIONS.get(action)
    if handler is None:
        raise Http404(f"No action {action}.")
    # Every action, reads on demand included, needs a role that may change the service: the token and a
    # request sent with it are as good as write access to its traffic.
    service = service_or_404(request, cluster_id, name, write=True)
    try:
        return handler(request, service)
    except FerryError as exc:
        if exc.status == 403:
            raise
        return _failed(request, service, ACTION_TABS.get(action, "overview"), exc)
