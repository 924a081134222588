"""Server-side apply as the fake API server does it: field ownership per manager, conflicts, removal of
fields a manager stopped applying. Simplified from the real thing, and said so: lists are atomic (the real
server merges lists with merge keys such as containers[name]); enough for Ferry, which applies whole
objects and shares only scalar fields (an HPA's spec.replicas) with other managers.
"""

from __future__ import annotations

import copy

Path = tuple[str, ...]
IGNORED = {("metadata", "name"), ("metadata", "namespace"), ("apiVersion",), ("kind",)}


class ApplyConflict(Exception):
    def __init__(self, conflicts: list[tuple[str, Path]]):
        self.conflicts = conflicts
        listed = ", ".join(f'conflict with "{manager}": .{".".join(path)}' for manager, path in conflicts)
        super().__init__(f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: {listed}")


def leaves(value: dict, prefix: Path = ()) -> dict[Path, object]:
    """Every leaf of an object: scalars, lists (atomic) and empty objects, by path."""
    result: dict[Path, object] = {}
    for key, item in value.items():
        path = prefix + (key,)
        if isinstance(item, dict) and item:
            result.update(leaves(item, path))
        else:
            result[path] = item
    return {path: item for path, item in result.items() if path not in IGNORED}


def server_side_apply(current: dict | None, config: dict, owners: dict[str, set[Path]], manager: str,
                      force: bool) -> tuple[dict, dict[str, set[Path]]]:
    """(the new object, the new ownership) after `manager` applies `config`. Raises ApplyConflict."""
    applied = leaves(config)
    owners = {name: set(paths) for name, paths in owners.items()}
    current = copy.deepcopy(current) if current is not None else {}
    existing = leaves(current)
    conflicts = []
    for name, paths in owners.items():
        if name == manager:
            continue
        for path in list(paths):
            if path in applied and existing.get(path) != applied[path]:
                if force:
                    paths.discard(path)  # forced: the field changes hands
                else:
                    conflicts.append((name, path))
    if conflicts:
        raise ApplyConflict(conflicts)
    result = current
    still_owned = set().union(*(paths for name, paths in owners.items() if name != manager)) if owners else set()
    for path in owners.get(manager, set()) - set(applied) - still_owned:
        _remove(result, path)  # the manager no longer wants this field, and nobody else owns it
    for path, item in applied.items():
        _set(result, path, copy.deepcopy(item))
    for key in ("apiVersion", "kind"):
        result[key] = config[key]
    owners[manager] = set(applied)
    return result, owners


def update(current: dict, changes: dict[Path, object], owners: dict[str, set[Path]], manager: str):
    """A non-apply write by another manager (a controller): it takes the fields it sets."""
    result = copy.deepcopy(current)
    owners = {name: set(paths) for name, paths in owners.items()}
    for path, item in changes.items():
        _set(result, path, item)
        for paths in owners.values():
            paths.discard(path)
        owners.setdefault(manager, set()).add(path)
    return result, owners


def managed_fields(owners: dict[str, set[Path]], api_version: str) -> list[dict]:
    entries = []
    for manager, paths in sorted(owners.items()):
        tree: dict = {}
        for path in sorted(paths):
            node = tree
            for key in path:
                node = node.setdefault(f"f:{key}", {})
        entries.append({"manager": manager, "operation": "Apply" if manager == "ferry" else "Update",
                        "apiVersion": api_version, "fieldsType": "FieldsV1", "fieldsV1": tree})
    return entries


def _set(target: dict, path: Path, item) -> None:
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = item


def _remove(target: dict, path: Path) -> None:
    parents = []
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            return
        parents.append((target, key))
        target = target[key]
    target.pop(path[-1], None)
    for parent, key in reversed(parents):  # drop objects left empty
        if parent[key] == {}:
            parent.pop(key)
