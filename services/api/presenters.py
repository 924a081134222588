"""Domain objects in the shapes and PascalCase names of EAS's OpenAPI (2021-07-01)."""

import json
from datetime import UTC, datetime

from django.conf import settings

from services.models import Cluster, Event, Instance, Service, Version
from services.rollouts import rollout_of
from services.selectors import service_token
from services.selectors.masking import masked_service_file
from services.servicefile.mesh import pool_name


def eas_time(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def predict_url(name: str) -> str:
    return f"{settings.FERRY_GATEWAY_URL.rstrip('/')}/api/predict/{name}"


def service_config(service: Service) -> dict:
    """The service file as it stands, with the scaling and labels the service really has now."""
    config = json.loads(json.dumps(service.spec))
    config.setdefault("metadata", {})["instance"] = service.instance_count
    if service.autoscaler is not None:
        config["autoscaler"] = service.autoscaler
    if service.labels:
        config["labels"] = dict(service.labels)
    return config


def _versions(service: Service) -> list[Version]:
    return sorted(service.versions.all(), key=lambda version: version.number)


def _current_version(versions: list[Version]) -> int:
    if not versions:
        return 0
    return max(versions, key=lambda version: (version.asked_weight, version.number)).number


def service_body(service: Service, *, with_token: bool = False, with_secrets: bool = False) -> dict:
    """DescribeService's body and each ListServices item. Prefetch versions and instances for lists.
    Secret-bearing fields of ServiceConfig are masked unless `with_secrets` (developers and owners)."""
    versions = _versions(service)
    instances = list(service.instances.all())
    ready = sum(1 for instance in instances if instance.ready)
    metadata = service.spec.get("metadata", {})
    body = {
        "ServiceName": service.name,
        "ServiceId": service.uid,
        "ServiceUid": service.uid,
        "Region": service.cluster.name,
        "Resource": service.cluster.name,
        "ResourceAlias": service.cluster.name,
        "WorkspaceId": service.project.name,
        "CallerUid": service.created_by.get_username() if service.created_by else "",
        "Status": service.phase,
        "Reason": service.status_reason,
        "Message": service.status_message,
        "CreateTime": eas_time(service.created_at),
        "UpdateTime": eas_time(service.updated_at),
        "CurrentVersion": _current_version(versions),
        "LatestVersion": versions[-1].number if versions else 0,
        "Cpu": int(metadata.get("cpu", 0)),
        "Gpu": int(metadata.get("gpu", 0)),
        "Memory": int(metadata.get("memory", 0)),
        "Image": _image_of(service.spec),
        "InternetEndpoint": predict_url(service.name),
        "IntranetEndpoint": predict_url(service.name),
        "TotalInstance": service.instance_count,
        "RunningInstance": ready,
        "PendingInstance": max(service.instance_count - ready, 0),
        "ServiceGroup": service.group,
        "Weight": service.group_weight,
        "TrafficState": service.traffic_state,
        "ServiceConfig": json.dumps(service_config(service) if with_secrets
                                    else masked_service_file(service_config(service))),
        "Labels": [{"LabelKey": key, "LabelValue": value} for key, value in sorted(service.labels.items())],
        "SafetyLock": service.safety_lock,
        "Source": "ferry",
        # Ferry's additions: the reconcile state and per-version traffic, which EAS has no fields for.
        "Conditions": service.conditions,
        "Generation": service.generation,
        "ObservedGeneration": service.observed_generation,
        "DesiredState": service.desired_state,
        # What was asked (a rollout's own shares while it decides); AppliedTraffic: what the gateway serves now.
        "Traffic": [{"Version": v.number, "Weight": v.asked_weight} for v in versions if v.asked_weight],
        "AppliedTraffic": [{"Version": v.number, "Weight": v.weight} for v in versions if v.weight],
        "LastRolledOutVersion": service.last_rolled_out_version,
        "Rollout": rollout_body(service.rollout),
    }
    if pool_name(service.spec):  # a model in a pool: where it is served (its copies: .../placements)
        body["Pool"] = pool_name(service.spec)
    if with_token:
        body["AccessToken"] = service_token(service)
    return body


def weights_body(versions) -> dict:
    """Weights per version as asked (what a write set, or the rollout's while it decides) and as applied."""
    versions = list(versions)
    return {"Weights": {str(v.number): v.asked_weight for v in versions},
            "AppliedWeights": {str(v.number): v.weight for v in versions}}


def rollout_body(stored: dict | None) -> dict | None:
    """The stored rollout record (services/rollouts.py) as the API shows it; times as they were stored."""
    rollout = rollout_of(stored)
    if rollout is None:
        return None
    return {"Strategy": str(rollout.strategy), "State": str(rollout.state), "FromVersion": rollout.from_version,
            "ToVersion": rollout.to_version, "CanaryWeight": rollout.canary_weight,
            "StartTime": stored["started_at"], "RetainUntil": stored.get("retain_until"), "Message": rollout.message}


def _image_of(spec: dict) -> str:
    containers = spec.get("containers") or []
    return containers[0].get("image", "") if containers else ""


def version_body(version: Version, *, with_secrets: bool = False) -> dict:
    return {
        "ImageId": version.number,
        "BuildTime": eas_time(version.created_at),
        "ImageAvailable": "true",
        "ServiceRunnable": "true",
        "Message": version.message,
        "ServiceConfig": json.dumps(version.service_file if with_secrets else masked_service_file(version.service_file)),
        "Weight": version.asked_weight,
        "AppliedWeight": version.weight,
    }


def instance_body(instance: Instance) -> dict:
    return {
        "InstanceName": instance.name,
        "Status": instance.state,
        "ReadyProcesses": 1 if instance.ready else 0,
        "TotalProcesses": 1,
        "RestartCount": instance.restart_count,
        "Reason": instance.last_exit_reason,
        "HostIP": instance.host,
        "InnerIP": instance.host,
        "InstanceIP": instance.host,
        "InstancePort": instance.port or 0,
        "StartAt": eas_time(instance.started_at),
        "StartTime": eas_time(instance.started_at),
        "Version": instance.version.number,
        "ResourceType": "local",
    }


def event_body(event: Event) -> dict:
    return {
        "Time": eas_time(event.created_at),
        "Type": event.type,
        "Reason": event.reason,
        "Message": event.message,
        "InstanceName": event.instance_name,
        # Not in EAS: the username of who acted, "" when Ferry itself did (the reconciler, the autoscaler, ...).
        "Actor": event.actor,
    }


def group_body(row: dict, *, access_token: str = "") -> dict:
    return {
        "Name": row["group"],
        "ClusterId": row["cluster__name"],
        "InternetEndpoint": predict_url(row["group"]),
        "IntranetEndpoint": predict_url(row["group"]),
        "CreateTime": eas_time(row["created"]),
        "UpdateTime": eas_time(row["updated"]),
        "QueueService": "",
        "TrafficMode": "weight",
        "AccessToken": access_token,
    }


def resource_body(cluster: Cluster) -> dict:
    return {
        "ClusterId": cluster.name,
        "ResourceId": cluster.name,
        "ResourceName": cluster.name,
        "ResourceType": "Dedicated",
        "Vendor": cluster.kind,
        "Status": "ResourceReady",
        "Message": "",
        "InstanceCount": 1 if cluster.kind == "local" else 0,
        "CpuCount": 0,
        "GpuCount": 0,
        "CreateTime": eas_time(cluster.created_at),
        "UpdateTime": eas_time(cluster.updated_at),
        "ExtraData": {"Kind": cluster.kind, "Flavor": cluster.flavor, "Default": cluster.is_default,
                      "ServiceCount": getattr(cluster, "service_count", None)},
    }


def autoscaler_body(service: Service, decision: dict | None) -> dict:
    """DescribeServiceAutoScaler: the settings, and the metrics the autoscaler loop last decided from."""
    config = service.autoscaler
    return {
        "ServiceName": service.name,
        "MinReplica": config.get("min"),
        "MaxReplica": config.get("max"),
        "ScaleStrategies": config.get("scaleStrategies", []),
        "Behavior": config.get("behavior", {}),
        "CurrentMetrics": current_metrics(service, decision),
        # Ferry: the loop's latest decision and why (the KPA's settings are under Kpa).
        "Kpa": config.get("kpa"),
        "Decision": decision,
    }


def current_metrics(service: Service, decision: dict | None) -> list[dict]:
    """Per strategy, the value of the loop's last decision (docs/autoscaling.md): EAS strategies in their
    threshold's units, the KPA's metric as its stable average. Empty before the loop has measured anything."""
    return [{"metricName": metric["metricName"], "value": metric["value"], "service": service.name}
            for metric in (decision or {}).get("metrics") or ()]


NOT_EVALUATED = "not evaluated by the autoscaler loop yet"


def cron_scaler_body(service: Service, records: dict[str, dict]) -> dict:
    """DescribeServiceCronScaler: each job with what it last did, as the autoscaler loop recorded it
    (autoscaler/cron_status.py); a job the loop has not looked at yet is Submitted."""
    created = _parsed(service.cron_scaler.get("SetAt"))
    jobs = []
    for job in service.cron_scaler["ScaleJobs"]:
        record = records.get(job["Name"]) or {}
        jobs.append({**job, "CreateTime": eas_time(created), "State": record.get("State", "Submitted"),
                     "LastProbeTime": eas_time(_parsed(record.get("EvaluatedAt"))),
                     "Message": record.get("Message", NOT_EVALUATED)})
    return {"ServiceName": service.name, "ScaleJobs": jobs, "ExcludeDates": service.cron_scaler["ExcludeDates"]}


def _parsed(moment: str | None) -> datetime | None:
    return datetime.fromisoformat(moment).astimezone(UTC) if moment else None
