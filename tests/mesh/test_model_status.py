"""A model in a pool is judged on the versions that take traffic once the plan has moved them
(deployer/mesh/members.py): a first version whose files could not be fetched, replaced by a good one, leaves the
model Running, not Failed on the old version's account, and the old one is not fetched again at every
reconcile."""

import pytest

from deployer.models import ModelFetch
from deployer.reconcile import reconcile
from services.models import Instance, Project, Service
from services.writes import service_create, service_update

from .models import constant_models

pytestmark = pytest.mark.django_db


def test_a_failed_first_version_replaced_by_a_good_one_leaves_the_model_running(settings, tmp_path):
    settings.FERRY_FILE_SOURCE_ROOTS = [tmp_path / "allowed"]
    good = constant_models(tmp_path / "allowed", 1)[0]
    outside = constant_models(tmp_path / "outside", 1)[0]
    project = Project.objects.get(name="default")
    pool = service_create(actor=None, project=project, document={
        "name": "statuspool", "processor": "sklearn", "metadata": {"type": "ModelPool", "instance": 1}})
    Instance.objects.filter(service=pool).delete()  # the test's own ready instance: nothing is started here
    Instance.objects.create(service=pool, version=pool.versions.get(), name="statuspool-0", ready=True,
                            state="Running", host="127.0.0.1", port=1)
    model = service_create(actor=None, project=project, document={
        "name": "statusmodel", "model_path": str(outside), "metadata": {"pool": "statuspool"}})
    for _ in range(3):
        reconcile(model.pk)
    assert Service.objects.get(pk=model.pk).status_reason == "ModelFetchFailed"

    service_update(actor=None, service=model, patch={"model_path": str(good)})
    for _ in range(3):
        reconcile(model.pk)
    model = Service.objects.get(pk=model.pk)
    assert (model.phase, model.status_reason) == ("Running", "ServedByPool"), model.status_message
    after = list(model.events.order_by("pk").values_list("reason", flat=True))
    assert "RolledOut" in after and "BecameFailed" not in after[after.index("RolledOut"):], after
    assert not ModelFetch.objects.filter(version__service=model, version__number=1).exists()
