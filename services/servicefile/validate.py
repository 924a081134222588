"""Validate a whole service file, or a partial update of one."""

import copy

from .checks import cross_field_errors
from .errors import ROOT_PATH, FieldError, ServiceFileError
from .messages import schema_errors
from .normalize import expand_dotted_keys, normalized
from .spec import service_name_of


def validate_service_file(doc: object) -> dict:
    """Return ``doc`` normalized (a new dict, defaults filled).

    Raises ServiceFileError listing every problem at once, so a user fixes a
    file in one round instead of one error per attempt.
    """
    if not isinstance(doc, dict):
        raise ServiceFileError([FieldError(ROOT_PATH, "must be a JSON object (a service file)")])
    expanded, errors = expand_dotted_keys(doc)
    errors += schema_errors(expanded)
    errors += cross_field_errors(expanded)
    if errors:
        raise ServiceFileError(errors)
    return normalized(expanded)


def merge_update(current: dict, patch: object) -> dict:
    """Apply a partial update (an RFC 7396 JSON merge patch: objects merge,
    null deletes, anything else replaces) to ``current`` and validate the
    result. The service name cannot change."""
    if not isinstance(patch, dict):
        raise ServiceFileError(
            [FieldError(ROOT_PATH, "must be a JSON object (the fields to change)")]
        )
    name = service_name_of(current)
    if "processor" in patch and "processor_code" not in patch:
        # processor_code records the code of the old processor; kept, it
        # would contradict the new one.
        current = {key: value for key, value in current.items() if key != "processor_code"}
    merged = merge_patch(current, patch)
    errors = _rename_errors(merged, name)
    try:
        # Validated under the current name, so that a rename attempt does not
        # hide the file's other problems behind a name conflict.
        result = validate_service_file(_named(merged, name))
    except ServiceFileError as error:
        errors += error.errors
    if errors:
        raise ServiceFileError(errors)
    return result


def merge_patch(target: object, patch: object) -> object:
    """RFC 7396 JSON merge patch; returns a new value, sharing no patch parts."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _rename_errors(merged: dict, name: str) -> list[FieldError]:
    metadata = merged.get("metadata")
    given = [merged.get("name"), metadata.get("name") if isinstance(metadata, dict) else None]
    if any(value is not None and value != name for value in given):
        message = f'cannot be changed (the service is "{name}"); create a new service instead'
        return [FieldError("name", message)]
    return []


def _named(doc: dict, name: str) -> dict:
    doc = {"name": name, **{key: value for key, value in doc.items() if key != "name"}}
    if isinstance(doc.get("metadata"), dict):
        doc["metadata"] = {key: v for key, v in doc["metadata"].items() if key != "name"}
    return doc
