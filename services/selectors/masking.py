"""Secret-bearing fields of a service file, masked for those who may only read the service (viewers).

Developers and owners see the file as they wrote it: they may change it, and with it any of these values,
so hiding them would protect nothing. Viewers see every field's presence, never its value: environment
values, git passwords, `dockerAuth`, and the password part of a URL-valued field.
"""

import copy
from urllib.parse import urlsplit, urlunsplit

MASK = "******"
URL_FIELDS = ("model_path", "processor_path", "warm_up_data_path")


def may_see_secrets(user, project) -> bool:
    from .access import WRITE_ROLES, role_in

    return role_in(user, project) in WRITE_ROLES


def sees_secrets_of(user):
    """A test of a service's project id: whether `user` sees that project's secrets (for lists of services)."""
    from services.models import ProjectMembership

    from .access import WRITE_ROLES

    if user.is_superuser:
        return lambda project_id: True
    writable = set(ProjectMembership.objects.filter(user=user, role__in=WRITE_ROLES)
                   .values_list("project_id", flat=True))
    return lambda project_id: project_id in writable


def masked_service_file(document: dict) -> dict:
    """A copy of the service file with each secret value replaced by a mask. Pure."""
    masked = copy.deepcopy(document)
    if masked.get("dockerAuth"):
        masked["dockerAuth"] = MASK
    for field in URL_FIELDS:
        if isinstance(masked.get(field), str):
            masked[field] = _url_without_password(masked[field])
    for container in masked.get("containers") or ():
        for variable in (container.get("env") or ()) if isinstance(container, dict) else ():
            if isinstance(variable, dict) and "value" in variable:
                variable["value"] = MASK
    for volume in masked.get("storage") or ():
        git = volume.get("git") if isinstance(volume, dict) else None
        if isinstance(git, dict):
            if git.get("password"):
                git["password"] = MASK
            if isinstance(git.get("repo"), str):
                git["repo"] = _url_without_password(git["repo"])
    return masked


def _url_without_password(value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        return MASK
    if parts.password is None:
        return value
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{parts.username}:{MASK}@{host}{port}", parts.path, parts.query,
                       parts.fragment))
