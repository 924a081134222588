"""Validates manifests against the real schemas: core kinds with `kubernetes-validate` (strict: unknown
fields fail) at KUBERNETES_VERSION, custom resources against the openAPIV3Schema of the CRDs in
tests/kubernetes/crds/ (copied into the project, see its README) with jsonschema.

The API server prunes unknown fields of a structural CRD schema silently; a test must not: an object whose
field would vanish on apply is a Ferry bug. So objects in the CRD schemas that list their properties (and do
not preserve unknown fields) are closed here. CEL rules (x-kubernetes-validations) are not evaluated.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30"
CRD_DIR = Path(__file__).resolve().parent / "crds"
CRD_GROUPS = ("serving.knative.dev", "networking.istio.io", "gateway.networking.k8s.io")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@cache
def _crd_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = document["spec"]["group"], document["spec"]["names"]["kind"]
            for version in document["spec"]["versions"]:
                schema = _closed(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                # The API server always takes these at the root, whether the schema lists them or not.
                for field in ("apiVersion", "kind", "metadata"):
                    schema.setdefault("properties", {}).setdefault(field, {})
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def _closed(schema: dict) -> dict:
    """Unknown fields fail, as `kubectl apply --validate=strict` (field validation) makes them."""
    if isinstance(schema, dict):
        if schema.get("x-kubernetes-int-or-string"):
            schema.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
            schema.pop("type", None)
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        for value in schema.values():
            if isinstance(value, dict):
                _closed(value)
            elif isinstance(value, list):
                for item in value:
                    _closed(item)
    return schema


def validate_known(manifest: dict) -> None:
    """What the fake API server checks: as `validate`, but custom resources only when their CRDs are here
    (a server thread must not skip a test)."""
    if manifest["apiVersion"].split("/")[0] in CRD_GROUPS and not CRD_DIR.is_dir():
        return
    validate(manifest)


def validate(manifest: dict) -> None:
    """Raises AssertionError naming the object and the failing field."""
    where = f'{manifest.get("kind")}/{manifest.get("metadata", {}).get("name")}'
    _validate_metadata(manifest, where)
    group = manifest["apiVersion"].split("/")[0]
    if group in CRD_GROUPS:
        schema = _crd_schemas().get((manifest["apiVersion"], manifest["kind"]))
        assert schema is not None, f"{where}: no CRD schema for {manifest['apiVersion']} {manifest['kind']}"
        body = {key: value for key, value in manifest.items() if key != "metadata"}
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors({**body, "metadata": {}}), key=str)
        assert not errors, f"{where}: " + "; ".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                                                    for e in errors[:5])
        return
    errors = sorted(_core_validator(manifest["apiVersion"], manifest["kind"]).iter_errors(manifest), key=str)
    assert not errors, f"{where}: " + "; ".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                                                for e in errors[:5])


@cache
def _core_validator(api_version: str, kind: str):
    """kubernetes-validate's own schema files (strict: closed objects) at KUBERNETES_VERSION, loaded once:
    its validate() reads them again on every call, which the fake API server would pay on every apply."""
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    version = next(v for v in reversed(kubernetes_validate.utils.all_versions())
                   if v.startswith(f"{KUBERNETES_VERSION}."))
    directory = f"kubernetes-json-schema/v{version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = schema_contents(f"{directory}/{kind.lower()}-{group_version}.json", version)
    definitions = schema_contents(f"{directory}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _validate_metadata(manifest: dict, where: str) -> None:
    """What the API server checks of metadata that the schemas leave to code: names and labels."""
    meta = manifest["metadata"]
    name = meta["name"]
    pattern = _DNS_LABEL if manifest["kind"] in ("Service", "Namespace") else _DNS_SUBDOMAIN
    assert pattern.match(name) and len(name) <= (63 if pattern is _DNS_LABEL else 253), f"{where}: bad name"
    for key, value in {**meta.get("labels", {}), **_template_labels(manifest)}.items():
        assert _LABEL_VALUE.match(value) and len(value) <= 63, f"{where}: label {key}={value!r} is invalid"
    for key, value in meta.get("annotations", {}).items():
        assert isinstance(value, str), f"{where}: annotation {key} must be a string"


def _template_labels(manifest: dict) -> dict:
    template = (manifest.get("spec") or {}).get("template") or {}
    return (template.get("metadata") or {}).get("labels") or {}
