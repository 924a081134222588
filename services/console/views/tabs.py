"""What each tab of the service page shows. Reads only: selectors, the metrics store, the process table."""

from datetime import timedelta

from django.conf import settings
from django.http import Http404
from django.utils import timezone

from services import selectors
from services.selectors.scaling import autoscaler_decision
from services import writes
from services.api.presenters import predict_url, service_config
from services.selectors.masking import masked_service_file, may_see_secrets
from services.models import Service
from services.selectors.logs import service_log_lines

from .. import chat, invoke, metrics
from ..mesh import mesh_panel
from ..documents import pretty
from ..forms import (
    AutoscalerForm,
    CanaryForm,
    CronScalerForm,
    InvokeForm,
    MirrorForm,
    ScaleForm,
    WeightsForm,
)
from ..monitoring import charts_for
from ..resources import instance_usage
from .base import desired_instances

TRAFFIC_REASONS = ("ShiftedTraffic", "RolledBack", "CreatedVersion", "SetMirror", "RemovedMirror", "SwitchedTraffic",
                   "FinishedRollout", "ReleasedService")
SCALING_REASONS = ("UpdatedScaling", "Scaled", "Activated", "SetCronScaler", "RemovedCronScaler", "ScaledUp",
                   "ScaledDown")
LOG_SINCE = {"5m": timedelta(minutes=5), "15m": timedelta(minutes=15), "1h": timedelta(hours=1),
             "24h": timedelta(hours=24)}
MAX_LOG_LINES = 500
BLUE_GREEN = (("rollout_switch", "Switch to green"), ("rollout_finish", "Finish rollout"))


def gateway_url() -> str:
    return settings.FERRY_GATEWAY_URL.rstrip("/")


def overview(request, service: Service, **_) -> dict:
    endpoints = [
        ("EAS", predict_url(service.name)),
        ("KServe V1", f"{gateway_url()}/v1/models/{service.name}:predict"),
        ("Open Inference V2", f"{gateway_url()}/v2/models/{service.name}/infer"),
    ]
    curl = (f"curl -X POST '{predict_url(service.name)}' \\\n  -H \"Authorization: $FERRY_TOKEN\" \\\n"
            f"  -H 'Content-Type: application/json' \\\n  -d '{invoke.sample_body(service)}'")
    return {"endpoints": endpoints, "curl": curl, "current_version": selectors.current_version(service),
            "latest_version": selectors.latest_version_number(service), **mesh_panel(service)}


def traffic_versions(service: Service) -> tuple:
    """(versions newest first, the newest, the base a canary shifts from or a rollback returns to)."""
    versions = list(selectors.versions_of(service))
    newest = versions[0] if versions else None
    by_number = {v.number: v for v in versions}
    base = by_number.get(service.last_rolled_out_version)
    if base is None or base == newest:
        base = next((v for v in versions if newest and v.number < newest.number), None)
    return versions, newest, base


def versions(request, service: Service, forms: dict | None = None, **_) -> dict:
    forms = forms or {}
    versions, newest, base = traffic_versions(service)
    instances = list(selectors.instances_of(service))
    rows = [{"version": v, "ready": sum(1 for i in instances if i.version_id == v.pk and i.ready),
             "total": sum(1 for i in instances if i.version_id == v.pk)} for v in versions]
    mirror = service.mirror or {}
    return {
        "version_rows": rows, "newest": newest, "base": base,
        "canary_percent": newest.asked_weight if newest and base else 0,
        "weights_form": forms.get("weights") or WeightsForm(versions=versions),
        "canary_form": forms.get("canary") or CanaryForm(initial={"percent": newest.asked_weight if newest else 0}),
        "mirror_form": forms.get("mirror") or MirrorForm(initial={"targets": ", ".join(mirror.get("targets", [])),
                                                                 "ratio": mirror.get("ratio", 10)}),
        "blue_green": [{"action": name.removeprefix("rollout_"), "label": label,
                        "available": hasattr(writes, name)} for name, label in BLUE_GREEN],
        "traffic_events": selectors.events_of(service).filter(reason__in=TRAFFIC_REASONS)[:8],
    }


def scaling(request, service: Service, forms: dict | None = None, **_) -> dict:
    forms = forms or {}
    autoscaler = service.autoscaler or {}
    strategy = (autoscaler.get("scaleStrategies") or [{}])[0]
    cron = service.cron_scaler or {}
    versions = [v.number for v in service.versions.all()]
    live = metrics.live_summaries([(service.cluster.name, service.name, versions)]).get(
        (service.cluster.name, service.name))
    window = metrics.read_window(service.cluster.name, service.name, versions, "15m")
    recent = [b for b in window.buckets if b.requests or b.concurrency_max][-6:]
    return {
        "scale_form": forms.get("scale") or ScaleForm(initial={"instances": service.instance_count}),
        "autoscaler_form": forms.get("autoscaler") or AutoscalerForm(initial={
            "min": autoscaler.get("min", 1), "max": autoscaler.get("max", max(service.instance_count, 2)),
            "metric": strategy.get("metricName", "qps"), "threshold": strategy.get("threshold", 10)}),
        "cron_form": forms.get("cron") or CronScalerForm(initial={
            "jobs": pretty(cron.get("ScaleJobs") or [{"Name": "workday", "Schedule": "0 0 8 * * 1-5",
                                                      "TargetSize": 2, "TimeZone": "UTC"}]),
            "exclude_dates": "\n".join(cron.get("ExcludeDates", []))}),
        "desired": desired_instances(service),
        "live": live,
        "concurrency_now": recent[-1].concurrency_max if recent else None,
        "scaling_events": selectors.events_of(service).filter(reason__in=SCALING_REASONS)[:8],
        "decision": autoscaler_decision(service),
    }


def monitoring(request, service: Service, **_) -> dict:
    range_name = request.GET.get("range", metrics.DEFAULT_RANGE)
    if range_name not in metrics.RANGES:
        range_name = metrics.DEFAULT_RANGE
    return {"range": range_name, "ranges": metrics.RANGE_LABELS, **charts_for(service, range_name)}


def log_filters(request) -> dict:
    return {"instance": request.GET.get("instance", ""), "keyword": request.GET.get("keyword", ""),
            "since": request.GET.get("since", "15m"), "tail": request.GET.get("tail", "") == "on"}


def log_lines(service: Service, filters: dict) -> list[str]:
    start = timezone.now() - LOG_SINCE[filters["since"]] if filters["since"] in LOG_SINCE else None
    names = set(service.instances.values_list("name", flat=True))
    if filters["instance"] and filters["instance"] not in names:
        raise Http404(f"No instance named {filters['instance']} in service {service.name}.")
    return service_log_lines(service, instance_name=filters["instance"], keyword=filters["keyword"], start=start)


def logs(request, service: Service, **_) -> dict:
    filters = log_filters(request)
    lines = log_lines(service, filters)
    return {"filters": filters, "lines": lines[-MAX_LOG_LINES:], "line_count": len(lines),
            "since_choices": [("5m", "5 min"), ("15m", "15 min"), ("1h", "1 hour"), ("24h", "24 hours"),
                              ("all", "everything")],
            "instance_names": list(service.instances.values_list("name", flat=True))}


def events(request, service: Service, **_) -> dict:
    event_type = request.GET.get("type", "")
    return {"event_type": event_type,
            "events": selectors.events_of(service, event_type=event_type if event_type in ("Normal", "Warning")
                                          else "")[:200]}


def instances(request, service: Service, **_) -> dict:
    rows = list(selectors.instances_of(service))
    usage = instance_usage(service) if service.cluster.kind == "local" else {}
    return {"instance_rows": [{"instance": i, "usage": usage.get(i.name)} for i in rows]}


def invoke_tab(request, service: Service, forms: dict | None = None, answer=None, **_) -> dict:
    forms = forms or {}
    return {"invoke_form": forms.get("invoke") or InvokeForm(initial={"protocol": "eas",
                                                                     "body": invoke.sample_body(service)}),
            "answer": answer,
            "ready_instances": [i.name for i in selectors.instances_of(service) if i.ready],
            "offers_chat": chat.offers_chat(service)}


def service_file(request, service: Service, **_) -> dict:
    """Viewers see secret-bearing values masked (services/selectors/masking.py); writers see the file as is."""
    shown = (lambda document: document) if may_see_secrets(request.user, service.project) else masked_service_file
    return {"config_json": pretty(shown(service_config(service))),
            "version_files": [(v.number, pretty(shown(v.service_file))) for v in selectors.versions_of(service)[:5]]}


TABS = {
    "overview": ("Overview", overview),
    "versions": ("Versions & traffic", versions),
    "scaling": ("Scaling", scaling),
    "monitoring": ("Monitoring", monitoring),
    "logs": ("Logs", logs),
    "events": ("Events", events),
    "instances": ("Instances", instances),
    "invoke": ("Invoke", invoke_tab),
    "file": ("Service file", service_file),
}
# Tabs whose panel refreshes itself while the service is on its way somewhere (and stops at rest).
LIVE_TABS = {"overview", "versions", "events", "instances"}
