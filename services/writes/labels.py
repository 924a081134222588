"""Service labels (EAS UpdateServiceLabel / DeleteServiceLabel, and a service file's `labels`).

Labels are the service's, not a version's: changing them never makes a version. They are rendered onto
Kubernetes objects, so a change is a change of desired state (the generation moves and a reconcile follows).
"""

from django.db import transaction

from services.errors import InvalidRequest, NotFound
from services.models import Service
from services.selectors.label_keys import label_key_problem
from services.selectors.locks import require_unlocked

from .events import event_record

MAX_VALUE_LENGTH = 256


def labels_checked(value: object, path: str) -> dict[str, str]:
    """The labels if every key and value is acceptable, else one error naming each bad one. Keys cannot hold a
    comma, because DeleteServiceLabel names keys comma-separated and such a label could never be deleted."""
    if not isinstance(value, dict):
        raise InvalidRequest.at(path, "must be an object of label keys to string values")
    errors = [{"Path": f"{path}.{key}", "Message": problem}
              for key, item in value.items() if (problem := _label_problem(key, item))]
    if errors:
        summary = "; ".join(f"{error['Path']}: {error['Message']}" for error in errors)
        raise InvalidRequest(summary, errors=errors)
    return dict(value)


def _label_problem(key: object, value: object) -> str | None:
    if (problem := label_key_problem(key)) is not None:
        return problem
    if not isinstance(value, str):
        return "a label value must be a string"
    if len(value) > MAX_VALUE_LENGTH:
        return f"a label value has at most {MAX_VALUE_LENGTH} characters"
    return None


def labels_after_update(current: dict, new_file: dict, update_type: str) -> dict:
    """The labels after UpdateService. A merge patch was applied to the file with the current labels in it, so
    the merged file's labels are the whole new set (a null removes a key). A replacement sets them when it has
    `labels` and keeps them when it has none: labels also come from CreateService's Labels and
    UpdateServiceLabel, which no file repeats. Pure."""
    if update_type == "merge":
        return dict(new_file.get("labels") or {})
    return dict(new_file["labels"]) if "labels" in new_file else dict(current)


def labels_changed_message(name: str, before: dict, after: dict) -> str:
    changed = sorted(key for key in after if before.get(key) != after[key])
    removed = sorted(set(before) - set(after))
    parts = ([f"set {', '.join(changed)}"] if changed else []) + ([f"removed {', '.join(removed)}"] if removed else [])
    return f"Changed the labels of {name}: " + "; ".join(parts)


@transaction.atomic
def service_label_update(*, actor, service: Service, labels: object) -> Service:
    """EAS UpdateServiceLabel: adds the labels given and changes those that exist; others stay."""
    labels = labels_checked(labels, "Labels")
    if not labels:
        raise InvalidRequest.at("Labels", "name at least one label")
    service = Service.objects.select_for_update().get(pk=service.pk)
    require_unlocked(service, "UpdateServiceLabel")
    return _labels_set(actor, service, {**service.labels, **labels})


@transaction.atomic
def service_label_delete(*, actor, service: Service, keys: list[str]) -> Service:
    """EAS DeleteServiceLabel. A key the service does not have is an error (a typo would otherwise pass
    silently), and then no label is removed."""
    if not keys:
        raise InvalidRequest.at("Keys", "name at least one label key")
    service = Service.objects.select_for_update().get(pk=service.pk)
    require_unlocked(service, "DeleteServiceLabel")
    missing = sorted(set(keys) - set(service.labels))
    if missing:
        raise NotFound(f"Service {service.name} has no label {', '.join(missing)}.", code="LabelNotFound")
    return _labels_set(actor, service, {key: value for key, value in service.labels.items() if key not in keys})


def _labels_set(actor, service: Service, labels: dict) -> Service:
    from .catalog import desired_state_changed  # catalog builds on this module

    if labels == service.labels:
        return service
    event_record(service=service, reason="ChangedLabels",
                 message=labels_changed_message(service.name, service.labels, labels), actor=actor)
    return desired_state_changed(service, labels=labels)
