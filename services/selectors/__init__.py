"""Every read of the domain."""

from .access import (
    project_for_write,
    projects_of,
    require_write,
    role_in,
    service_for,
    services_visible_to,
)
from .catalog import (
    Page,
    clusters_list,
    current_version,
    events_of,
    group_members,
    groups_visible_to,
    instance_counts,
    instances_of,
    latest_version_number,
    paginate,
    service_token,
    services_list,
    versions_of,
)
from .clusters import cluster_describe, cluster_get, cluster_health, service_file_manifests, service_manifests
from .credentials import access_key_of, access_keys_of, api_token_of, api_tokens_of

__all__ = [
    "Page",
    "access_key_of",
    "access_keys_of",
    "api_token_of",
    "api_tokens_of",
    "cluster_describe",
    "cluster_get",
    "cluster_health",
    "clusters_list",
    "current_version",
    "events_of",
    "group_members",
    "groups_visible_to",
    "instance_counts",
    "instances_of",
    "latest_version_number",
    "paginate",
    "project_for_write",
    "projects_of",
    "require_write",
    "role_in",
    "service_for",
    "service_token",
    "services_list",
    "service_file_manifests",
    "service_manifests",
    "services_visible_to",
    "versions_of",
]
