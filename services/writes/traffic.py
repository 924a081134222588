"""Writes to traffic: weights per version, rollback to a version, group weight (ReleaseService), mirror."""

from django.db import transaction

from contracts.rollouts import CanaryAction, canary_action, canary_refusal
from services.errors import Conflict, InvalidRequest, NotFound
from services.models import Service, Version
from services.rollouts import rollout_of

from services.selectors.traffic_refs import mirror_target_uids, published_group

from .catalog import desired_state_changed
from .events import event_record
from .rollouts import all_traffic_to, rollout_set_canary_weight

TRAFFIC_STATES = ("standalone", "grouping")


def _locked(service: Service) -> Service:
    return Service.objects.select_for_update().get(pk=service.pk)


def _describe_weights(weights: dict[int, int]) -> str:
    return ", ".join(f"v{number} {weight} %" for number, weight in sorted(weights.items()))


def _cancel_rollout(service: Service, why: str, actor) -> None:
    rollout = rollout_of(service.rollout)
    if rollout is not None and rollout.in_progress:
        event_record(service=service, reason="CancelledRollout",
                     message=f"Cancelled the rollout of version {rollout.to_version} of {service.name}: {why}",
                     actor=actor)
    service.rollout = None


@transaction.atomic
def version_weights_set(*, actor, service: Service, weights: dict[int, int]) -> Service:
    """Sets the share of traffic of each version (others get 0). Weights are whole percents summing to 100."""
    service = _locked(service)
    versions = {version.number: version for version in service.versions.all()}
    unknown = sorted(set(weights) - set(versions))
    if unknown:
        raise InvalidRequest.at("Weights", f"no version {', '.join(map(str, unknown))} in {service.name}")
    bad = [number for number, weight in weights.items() if not 0 <= weight <= 100]
    if bad:
        raise InvalidRequest.at("Weights", f"weights must be between 0 and 100 (version {bad[0]})")
    if sum(weights.values()) != 100:
        raise InvalidRequest.at("Weights", f"weights must sum to 100, not {sum(weights.values())}")
    before = {number: version.asked_weight for number, version in versions.items() if version.asked_weight}
    for number, version in versions.items():  # the ask; the reconciler applies it (Version.weight)
        version.requested_weight = weights.get(number, 0)
        version.save(update_fields=["requested_weight"])
    after = {number: weight for number, weight in weights.items() if weight}
    if len(after) == 1:
        service.last_rolled_out_version = next(iter(after))
    _cancel_rollout(service, "weights were set by hand", actor)
    event_record(service=service, reason="ShiftedTraffic",
                 message=f"Shifted traffic of {service.name}: {_describe_weights(before)} -> {_describe_weights(after)}",
                 actor=actor)
    return desired_state_changed(service)


@transaction.atomic
def version_rollback(*, actor, service: Service, number: int) -> Service:
    """EAS UpdateServiceVersion: serve version `number` with all traffic. If its instances are gone, they come
    back first: the version serving now keeps the traffic until they are ready (`all_traffic_to`)."""
    service = _locked(service)
    try:
        version = service.versions.get(number=number)
    except Version.DoesNotExist:
        raise NotFound(f"Service {service.name} has no version {number}.", code="VersionNotFound") from None
    spec = dict(version.service_file)
    # Scaling and grouping stay as they are now: a rollback changes what runs, not how many.
    spec["metadata"] = {**spec.get("metadata", {}), "instance": service.instance_count}
    if service.group:
        spec["metadata"]["group"] = service.group
    if service.autoscaler is not None:
        spec["autoscaler"] = service.autoscaler
    else:
        spec.pop("autoscaler", None)
    service.spec = spec
    _cancel_rollout(service, f"version {number} was chosen", actor)
    meanwhile = all_traffic_to(service, number)
    message = f"Rolled {service.name} back to version {number}"
    if meanwhile is not None:
        message = (f"Rolling {service.name} back to version {number}: version {meanwhile} serves until "
                   f"version {number}'s instances are ready")
    event_record(service=service, reason="RolledBack", message=message, actor=actor)
    return desired_state_changed(service)


@transaction.atomic
def service_release(*, actor, service: Service, weight: int | None, traffic_state: str | None) -> Service:
    """EAS ReleaseService: this service's weight inside its service group, and whether it takes group traffic."""
    service = _locked(service)
    if weight is None and traffic_state is None:
        raise InvalidRequest.at("Weight", "give Weight, TrafficState or both")
    if weight is not None and not 0 <= weight <= 100:
        raise InvalidRequest.at("Weight", "must be an integer between 0 and 100")
    if traffic_state is not None and traffic_state not in TRAFFIC_STATES:
        raise InvalidRequest.at("TrafficState", f"must be one of {', '.join(TRAFFIC_STATES)}")
    if not service.group:
        raise InvalidRequest.at(
            "Weight", f"service {service.name} is in no service group; set metadata.group first"
        )
    if not published_group(service):
        raise InvalidRequest.at("TrafficState", f"group {service.group} belongs to another project: "
                                                "choose another metadata.group", code="GroupNotOwned")
    old = (service.group_weight, service.traffic_state)
    service.group_weight = service.group_weight if weight is None else weight
    service.traffic_state = traffic_state or service.traffic_state
    event_record(service=service, reason="ReleasedService",
                 message=f"Set {service.name} in group {service.group}: weight {old[0]} -> {service.group_weight}, "
                         f"traffic {old[1]} -> {service.traffic_state}", actor=actor)
    return desired_state_changed(service)


@transaction.atomic
def mirror_set(*, actor, service: Service, targets: list[str], ratio: int) -> Service:
    """EAS ServiceMirror: copies `ratio` % of requests to each target service; their answers are discarded."""
    service = _locked(service)
    if not targets:
        raise InvalidRequest.at("Target", "name at least one target service")
    if not 0 <= ratio <= 100:
        raise InvalidRequest.at("Ratio", "must be an integer between 0 and 100")
    if service.name in targets:
        raise InvalidRequest.at("Target", "a service cannot mirror to itself")
    found = set(
        Service.objects.filter(cluster=service.cluster, project=service.project, name__in=targets,
                               deletion_requested_at__isnull=True).values_list("name", flat=True)
    )
    missing = [name for name in targets if name not in found]
    if missing:
        raise InvalidRequest.at("Target", f"no service named {', '.join(missing)} in this project and cluster")
    # Targets are kept by identity too: the route publishes a target only while it is still this very service
    # (services.selectors.traffic_refs), never a later one of the same name.
    targets = list(dict.fromkeys(targets))
    service.mirror = {"targets": targets, "ratio": ratio, "target_uids": mirror_target_uids(service, targets)}
    event_record(service=service, reason="SetMirror",
                 message=f"Mirrored {ratio} % of {service.name}'s requests to {', '.join(targets)}", actor=actor)
    return desired_state_changed(service)


@transaction.atomic
def mirror_delete(*, actor, service: Service) -> Service:
    service = _locked(service)
    if service.mirror is None:
        raise NotFound(f"Service {service.name} has no mirror.", code="MirrorNotFound")
    service.mirror = None
    event_record(service=service, reason="RemovedMirror", message=f"Stopped mirroring {service.name}", actor=actor)
    return desired_state_changed(service)


def _canary_base(service: Service, newest: int) -> int | None:
    """The version a canary shifts from: the last rolled-out one, or else the one before the newest."""
    if service.last_rolled_out_version and service.last_rolled_out_version != newest:
        return service.last_rolled_out_version
    return service.versions.filter(number__lt=newest).order_by("-number").values_list("number", flat=True).first()


@transaction.atomic
def canary_set(*, actor, service: Service, percent: int) -> Service:
    """"Send `percent` to the newest version", decided here once for the API, the console and the CLI: during a
    canary rollout its share moves (traffic still waits for readiness); during another rollout (rolling,
    blue-green) it is refused, naming that rollout, and nothing changes (the issue's one decision: a slider
    must not cancel a rollout by accident); with no rollout the newest version and its base get hand-set
    weights."""
    service = _locked(service)
    if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
        raise InvalidRequest.at("Weight", "must be an integer between 0 and 100")
    rollout = rollout_of(service.rollout)
    state, strategy = (str(rollout.state), str(rollout.strategy)) if rollout else (None, None)
    action = canary_action(state, strategy)
    if action is CanaryAction.SET_CANARY_WEIGHT:
        return rollout_set_canary_weight(actor=actor, service=service, weight=percent)
    if action is CanaryAction.OTHER_ROLLOUT:
        raise Conflict(canary_refusal(service.name, state, strategy), code="RolloutInProgress")
    newest = service.versions.order_by("-number").values_list("number", flat=True).first()
    base = _canary_base(service, newest)
    if base is None:
        raise Conflict(f"Service {service.name} has only version {newest}: a canary needs a newer version. Make "
                       "one with an update of the service.", code="NothingToCompare")
    shares = {base: 100 - percent, newest: percent}
    return version_weights_set(actor=actor, service=service,
                               weights={number: share for number, share in shares.items() if share})
