"""Two projects never share a Kubernetes namespace (docs/security.md, Project boundaries): a project's namespace
is its name in lower case with '_' as '-', so names that differ only so are refused, and long names that would be
cut to the same 63 characters stay apart."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from deployer.kubernetes.build import namespace_for
from services.models import Cluster, Project

pytestmark = pytest.mark.django_db
ATTEMPTS = ["team-x", "TEAM_X", "Team-x"]


@pytest.mark.parametrize("twin", ATTEMPTS)
def test_a_project_named_like_anothers_namespace_is_refused_and_not_created(twin):
    Project.objects.create(name="team_x")
    with pytest.raises(ValidationError, match="share one Kubernetes namespace"):
        Project(name=twin).full_clean()  # what the admin's form runs
    with pytest.raises(IntegrityError), transaction.atomic():
        Project.objects.create(name=twin)  # and the database itself, for any other writer
    assert not Project.objects.exclude(name__in=("default", "team_x")).exists()


def test_long_names_that_share_their_first_63_characters_get_different_namespaces():
    cluster = Cluster(name="kube", kind="kubernetes")
    first, second = "a" * 60 + "-one", "a" * 60 + "-two"
    namespaces = namespace_for(cluster, first), namespace_for(cluster, second)
    assert namespaces[0] != namespaces[1]
    assert all(len(n) <= 63 and n.startswith("ferry-aaaa") for n in namespaces), namespaces
    assert namespace_for(cluster, "team_a") == "ferry-team-a"  # short names keep their readable form
