"""Validation problems, each tied to the place in the file where it was found."""

import re
from collections.abc import Iterable
from dataclasses import dataclass

ROOT_PATH = "$"

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class FieldError:
    """One problem: ``path`` is like "metadata.instance" or "containers[0].port"
    ("$" for the file itself); ``message`` reads on from it, e.g.
    "must be an integer >= 0"."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ServiceFileError(Exception):
    """A service file was rejected; ``errors`` lists every problem found."""

    def __init__(self, errors: Iterable[FieldError]):
        self.errors: list[FieldError] = sorted_unique(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


def sorted_unique(errors: Iterable[FieldError]) -> list[FieldError]:
    """Drop repeats and order by path, so output is stable for users and tests."""
    return sorted(set(errors), key=lambda error: (error.path, error.message))


def format_path(parts: Iterable[str | int]) -> str:
    """Render JSON path parts: ("containers", 0, "port") -> "containers[0].port".

    Keys that are not plain identifiers (label or feature keys such as
    "eas.aliyun.com/extra-ephemeral-storage") are written as ["key"] so the
    path stays unambiguous.
    """
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f'["{part}"]'
    return text or ROOT_PATH

