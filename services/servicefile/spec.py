"""What identifies a service, and which part of its file shapes an instance."""

import copy

from .errors import FieldError, ServiceFileError

# Fields that say how many instances run, where, for whom and how they are
# rolled out, but not what an instance is. Changing only these must not start
# a new version (no instance restarts); anything else does.
SERVICE_LEVEL_FIELDS = frozenset({"name", "token", "autoscaler", "rollout", "labels"})
SERVICE_LEVEL_METADATA = frozenset(
    {"name", "instance", "group", "resource", "workspace_id", "rolling_strategy"}
)


def instance_spec(doc: dict) -> dict:
    """The part of a normalized service file that shapes an instance:
    processor, model, image, command, env, resources, probes, storage,
    processor params, warm-up... Two files with equal instance specs are the
    same version."""
    spec = {
        key: copy.deepcopy(value)
        for key, value in doc.items()
        if key not in SERVICE_LEVEL_FIELDS
    }
    if isinstance(spec.get("metadata"), dict):
        spec["metadata"] = {
            key: value
            for key, value in spec["metadata"].items()
            if key not in SERVICE_LEVEL_METADATA
        }
    return spec


def service_name_of(doc: dict) -> str:
    """The service name, from ``name`` or else ``metadata.name``."""
    name = doc.get("name") if isinstance(doc, dict) else None
    if name is None and isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
        name = doc["metadata"].get("name")
    if not isinstance(name, str) or not name:
        raise ServiceFileError([FieldError("name", "is required (give name or metadata.name)")])
    return name


def dns_name(service_name: str) -> str:
    """The service name as a DNS-1123 label, for Kubernetes objects and hosts.

    Service names allow underscores, DNS labels do not; both are lowercase and
    at most 63 characters, so replacing "_" by "-" is enough.
    """
    return service_name.replace("_", "-")
