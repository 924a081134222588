"""PAI-EAS compatible service files: validation, normalization, updates.

A service file is the JSON document an EAS user gives `eascmd create`, in
either EAS style (processor + model_path, or metadata + containers), plus a
few documented Ferry extensions. See docs/service-files.md.

Pure Python (no Django) so that the API, the CLI and the tests share it.
"""

from .errors import FieldError, ServiceFileError
from .schema import SERVICE_FILE_SCHEMA
from .spec import dns_name, instance_spec, service_name_of
from .validate import merge_update, validate_service_file

__all__ = [
    "SERVICE_FILE_SCHEMA",
    "FieldError",
    "ServiceFileError",
    "dns_name",
    "instance_spec",
    "merge_update",
    "service_name_of",
    "validate_service_file",
]
