"""Service files in the console: parsing what was pasted, errors by JSON path, and an annotated listing that
puts each error on the line of the field it is about."""

import json
from dataclasses import dataclass, field

from services.errors import FerryError
from services.servicefile import ServiceFileError
from services.servicefile.errors import format_path

ROOT = "$"


def errors_of(exc: Exception) -> list[dict]:
    """[{"Path", "Message"}] from whatever the domain raised, as the API reports it."""
    if isinstance(exc, ServiceFileError):
        return [{"Path": e.path, "Message": e.message} for e in exc.errors]
    if isinstance(exc, FerryError):
        return exc.errors or [{"Path": ROOT, "Message": exc.message}]
    raise TypeError(exc)


def parse(text: str) -> tuple[object, list[dict]]:
    """The JSON document, or the syntax error at its line and column."""
    if not text.strip():
        return None, [{"Path": ROOT, "Message": "paste or upload a service file (a JSON object)"}]
    try:
        return json.loads(text), []
    except json.JSONDecodeError as exc:
        return None, [{"Path": ROOT, "Message": f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                       "Line": exc.lineno}]


@dataclass
class Line:
    number: int
    text: str
    path: str
    errors: list = field(default_factory=list)


def _lines(value, parts: tuple, indent: int, prefix: str, suffix: str, out: list[Line]) -> None:
    pad = "  " * indent
    path = format_path(parts)
    if isinstance(value, dict) and value:
        out.append(Line(0, f"{pad}{prefix}{{", path))
        items = list(value.items())
        for index, (key, item) in enumerate(items):
            _lines(item, (*parts, key), indent + 1, f"{json.dumps(key)}: ", "," if index < len(items) - 1 else "", out)
        out.append(Line(0, f"{pad}}}{suffix}", path))
    elif isinstance(value, list) and value:
        out.append(Line(0, f"{pad}{prefix}[", path))
        for index, item in enumerate(value):
            _lines(item, (*parts, index), indent + 1, "", "," if index < len(value) - 1 else "", out)
        out.append(Line(0, f"{pad}]{suffix}", path))
    else:
        out.append(Line(0, f"{pad}{prefix}{json.dumps(value)}{suffix}", path))


def annotated(document, errors: list[dict]) -> list[Line]:
    """The document pretty-printed, each error attached to the first line of its path, or of the nearest
    ancestor present (a missing field's error sits on its parent object)."""
    out: list[Line] = []
    _lines(document, (), 0, "", "", out)
    first_line = {}
    for number, line in enumerate(out, start=1):
        line.number = number
        first_line.setdefault(line.path, line)
    for error in errors:
        path = error["Path"] or ROOT
        while path not in first_line and path != ROOT:
            path = _parent(path)
        first_line.get(path, out[0]).errors.append(error)
    return out


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ROOT


def pretty(document) -> str:
    return json.dumps(document, indent=2)
