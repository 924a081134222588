"""Names, labels and annotations every rendered object shares. Pure.

Names are deterministic (`<dns name>-v<version>`), so a reconcile can read, compare and prune by name and
label without remembering anything. Labels on every object let `prune` find what Ferry made for a service.
"""

from __future__ import annotations

import re

from .desired import ServiceDesired

MANAGED_BY = "app.kubernetes.io/managed-by"
SERVICE_LABEL = "ferry.dev/service"
VERSION_LABEL = "ferry.dev/version"
PROJECT_LABEL = "ferry.dev/project"
GROUP_LABEL = "ferry.dev/group"
FIELD_MANAGER = "ferry"
VERSION_HEADER = "ferry-version"  # a request with this header reaches that version, whatever the weights

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def dns_name(service_name: str) -> str:
    """The EAS name as a DNS-1123 label (`_` -> `-`); see services.servicefile.dns_name, kept equal here so
    the renderers import no Django app."""
    return service_name.replace("_", "-")


def version_name(desired: ServiceDesired, number: int) -> str:
    return f"{dns_name(desired.name)}-v{number}"


def version_tag(number: int) -> str:
    """Knative traffic tag and Istio subset of a version."""
    return f"v{number}"


def selector_labels(desired: ServiceDesired) -> dict[str, str]:
    """What identifies every object Ferry made for this service (the prune selector)."""
    return {MANAGED_BY: FIELD_MANAGER, SERVICE_LABEL: dns_name(desired.name)}


def label_selector(desired: ServiceDesired) -> str:
    return ",".join(f"{key}={value}" for key, value in selector_labels(desired).items())


def service_labels(desired: ServiceDesired) -> dict[str, str]:
    """Selector labels, then the project and group, then the user's own labels (never overriding Ferry's)."""
    labels = {**_valid_labels(desired.labels), **_valid_labels(desired.cluster.pod_labels)}
    if desired.project:
        labels[PROJECT_LABEL] = _label_value(desired.project)
    if desired.group:
        labels[GROUP_LABEL] = _label_value(desired.group)
    labels["app.kubernetes.io/name"] = dns_name(desired.name)
    return {**labels, **selector_labels(desired)}


def version_labels(desired: ServiceDesired, number: int) -> dict[str, str]:
    return {**service_labels(desired), VERSION_LABEL: str(number)}


def metadata(desired: ServiceDesired, name: str, *, number: int | None = None,
             annotations: dict[str, str] | None = None) -> dict:
    labels = service_labels(desired) if number is None else version_labels(desired, number)
    meta = {"name": name, "namespace": desired.namespace, "labels": labels}
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    return meta


def _label_value(value: str) -> str:
    """A free string as a label value: at most 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.")
    return cleaned


def _valid_labels(labels: dict[str, str]) -> dict[str, str]:
    """User labels that Kubernetes accepts as they are; others are left out rather than failing the apply
    (they stay on the Ferry service, where any string is allowed)."""
    return {key: value for key, value in labels.items() if is_label_key(key) and _LABEL_VALUE.match(str(value))
            and len(str(value)) <= 63}


def is_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_KEY_NAME.match(name))


def is_annotation_key(key: str) -> bool:
    """Annotation keys have the same syntax as label keys."""
    return is_label_key(key)


def service_selector(service_name: str) -> str:
    """The prune / observe selector of a service, from its EAS name alone."""
    return f"{MANAGED_BY}={FIELD_MANAGER},{SERVICE_LABEL}={dns_name(service_name)}"
