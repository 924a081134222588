"""Turn jsonschema's errors into FieldErrors that read like "<path>: <message>".

jsonschema words errors for schema authors ("'x' is not of type 'integer'");
users need the field and what it must be ("metadata.instance: must be an
integer >= 0"), so each message is rebuilt from the failing part of the schema.
"""

import difflib
from collections.abc import Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .errors import FieldError, format_path
from .schema import SERVICE_FILE_SCHEMA

_VALIDATOR = Draft202012Validator(SERVICE_FILE_SCHEMA)

_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
}


def schema_errors(doc: object) -> list[FieldError]:
    """Every place where ``doc`` does not fit SERVICE_FILE_SCHEMA."""
    return [
        field_error
        for error in _VALIDATOR.iter_errors(doc)
        for field_error in _to_field_errors(error)
    ]


def _to_field_errors(error: ValidationError) -> Iterator[FieldError]:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        yield from _unknown_fields(path, error.instance, error.schema)
    elif error.validator == "required":
        for name in error.validator_value:
            if name not in error.instance:
                yield FieldError(format_path(path + [name]), "is required")
    else:
        message = "must be " + describe(error.schema)
        if error.validator == "enum" and isinstance(error.instance, str):
            choices = [str(value) for value in error.validator_value]
            message += _did_you_mean(error.instance, choices)
        yield FieldError(format_path(path), message)


def _unknown_fields(path: list, instance: dict, schema: dict) -> Iterator[FieldError]:
    known = list(schema.get("properties", {}))
    for name in instance:
        if name not in known:
            message = f'unknown field "{name}"' + _did_you_mean(name, known)
            yield FieldError(format_path(path), message)


def _did_you_mean(given: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(given, choices, n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def describe(schema: dict) -> str:
    """What a value must be, in words: "an integer >= 0", "one of: "a", "b"" ..."""
    if "x-expected" in schema:
        return schema["x-expected"]
    if "enum" in schema:
        return "one of: " + ", ".join(f'"{value}"' for value in schema["enum"])
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return _TYPE_WORDS[kind] + _bounds(schema)
    if kind == "string" and schema.get("minLength"):
        return "a non-empty string"
    if kind == "array":
        return _describe_list(schema)
    if isinstance(kind, list):
        return " or ".join(_TYPE_WORDS[each] for each in kind)
    return _TYPE_WORDS.get(kind, "valid")


def _bounds(schema: dict) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema:
        return f" > {schema['exclusiveMinimum']}"
    if low is not None and high is not None:
        return f" between {low} and {high}"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def _describe_list(schema: dict) -> str:
    items = schema.get("items", {})
    noun = "a non-empty list" if schema.get("minItems") else "a list"
    if items.get("type") == "string":
        return noun + " of strings"
    if items.get("type") == "object":
        return noun + " of objects"
    return noun
