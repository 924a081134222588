"""EAS CloneService: a new service made from an existing one's file."""

import copy

from django.db import transaction

from services.errors import InvalidRequest
from services.models import Service
from services.servicefile.validate import merge_patch

from .catalog import service_create
from .events import event_record


def clone_base(source: Service) -> dict:
    """The source's file as it stands now: its scaling as it is (not only as its file last said), its labels,
    and its cluster named, so that the clone lands beside it unless told otherwise. Never its token."""
    document = copy.deepcopy(source.spec)
    metadata = document.setdefault("metadata", {})
    metadata["instance"] = source.instance_count
    metadata["resource"] = source.cluster.name
    if source.autoscaler is not None:
        document["autoscaler"] = copy.deepcopy(source.autoscaler)
    if source.labels:
        document["labels"] = dict(source.labels)
    return document


def clone_name(patch: dict) -> str:
    metadata = patch.get("metadata") if isinstance(patch.get("metadata"), dict) else {}
    name = patch.get("name") or metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest.at("name", "give the new service's name (name or metadata.name)",
                                code="InvalidServiceConfig")
    return name


@transaction.atomic
def service_clone(*, actor, source: Service, patch: object, labels: dict | None = None) -> Service:
    """The source's file with `patch` (an RFC 7396 merge patch that names the new service) applied, in the
    source's project. The clone gets a new token unless the patch gives one; `labels` (CloneService's Labels)
    win over the source's and the patch's. Cron scaler and mirror are not part of a file and are not copied."""
    if not isinstance(patch, dict):
        raise InvalidRequest.at("body", "must be a JSON object naming the new service", code="InvalidServiceConfig")
    name = clone_name(patch)
    patch = {**patch, "name": name}
    if isinstance(patch.get("metadata"), dict):
        patch["metadata"] = {key: value for key, value in patch["metadata"].items() if key != "name"}
    clone = service_create(actor=actor, project=source.project, document=merge_patch(clone_base(source), patch),
                           labels=labels)
    event_record(service=clone, reason="ClonedService", message=f"Cloned {clone.name} from {source.name}",
                 actor=actor)
    return clone
