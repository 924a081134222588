"""The browser console's views. Thin: reads through services.selectors (and the console's read helpers),
every write through a services.writes function, the same ones the REST API calls."""

from .actions import service_action
from .editing import service_create, service_edit
from .keys import access_key_create, access_key_revoke, api_token_create, api_token_revoke, keys
from .service_page import logs_download, service_page
from .services_list import clusters, project_switch, service_list

__all__ = [
    "access_key_create",
    "access_key_revoke",
    "api_token_create",
    "api_token_revoke",
    "clusters",
    "keys",
    "logs_download",
    "project_switch",
    "service_action",
    "service_create",
    "service_edit",
    "service_list",
    "service_page",
]
