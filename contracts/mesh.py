"""The model mesh's names (docs/mesh.md): the key a pool instance serves one version of a pool model under.

Service names are lowercase letters, digits and underscores, so `<service>-v<number>` can name no other
service's version, and a key read back from an instance says which version it is.
"""

from __future__ import annotations

import re

_KEY = re.compile(r"^([a-z][a-z0-9_]{0,62})-v([0-9]+)$")


def model_key(service: str, version: int) -> str:
    return f"{service}-v{version}"


def parse_model_key(key: str) -> tuple[str, int] | None:
    """(service, version) of a key, None for a name that is not one."""
    match = _KEY.match(key)
    return (match.group(1), int(match.group(2))) if match else None
