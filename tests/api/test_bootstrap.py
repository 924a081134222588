"""`manage.py ferry_bootstrap`: the first admin, its password file and API token, idempotently."""

import io
import os
import stat

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from services.models import ApiToken, Project, ProjectMembership, ProjectRole
from services.writes.credentials import api_token_revoke

pytestmark = pytest.mark.django_db


def bootstrap(var_dir, **options) -> str:
    out = io.StringIO()
    call_command("ferry_bootstrap", var_dir=var_dir, stdout=out, **options)
    return out.getvalue()


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def whoami_with(token: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/api/v2/ferry/whoami")


def test_it_creates_an_admin_whose_password_is_in_a_private_file(tmp_path):
    previous_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        output = bootstrap(tmp_path)
    finally:
        os.umask(previous_umask)

    admin = get_user_model().objects.get(username="admin")
    password_file = tmp_path / "admin-password"
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password(password_file.read_text().strip())
    assert mode_of(password_file) == 0o600
    assert mode_of(tmp_path / "admin-token") == 0o600
    assert "Created admin user 'admin'; its password is in" in output
    assert password_file.read_text().strip() not in output


def test_it_makes_the_admin_an_owner_of_the_default_project(tmp_path):
    Project.objects.filter(name=settings.FERRY_DEFAULT_PROJECT).delete()

    bootstrap(tmp_path)

    membership = ProjectMembership.objects.get(user__username="admin")
    assert membership.project.name == settings.FERRY_DEFAULT_PROJECT
    assert membership.role == ProjectRole.OWNER


def test_it_writes_a_token_that_authenticates_as_the_admin(tmp_path):
    bootstrap(tmp_path)

    response = whoami_with((tmp_path / "admin-token").read_text().strip())

    assert response.status_code == 200
    assert response.json()["UserName"] == "admin"
    assert {"Name": settings.FERRY_DEFAULT_PROJECT, "Role": "owner"} in response.json()["Projects"]
    assert ApiToken.objects.get().name == "admin (make run)"


def test_it_changes_nothing_when_run_again(tmp_path):
    bootstrap(tmp_path)
    files_before = {path.name: path.read_text() for path in tmp_path.iterdir()}

    output = bootstrap(tmp_path)

    assert get_user_model().objects.count() == 1
    assert ApiToken.objects.count() == 1
    assert ProjectMembership.objects.count() == 1
    assert {path.name: path.read_text() for path in tmp_path.iterdir()} == files_before
    assert "Admin user 'admin' exists." in output
    assert "password" not in output


def test_it_keeps_an_existing_superuser_instead_of_creating_admin(tmp_path, django_user_model):
    django_user_model.objects.create_superuser(username="root", email="", password="kept-password")

    output = bootstrap(tmp_path)

    assert not django_user_model.objects.filter(username="admin").exists()
    assert not (tmp_path / "admin-password").exists()
    assert "Admin user 'root' exists." in output
    assert whoami_with((tmp_path / "admin-token").read_text().strip()).json()["UserName"] == "root"


def test_it_replaces_a_token_file_the_database_no_longer_accepts(tmp_path):
    bootstrap(tmp_path)
    api_token_revoke(token=ApiToken.objects.get())

    bootstrap(tmp_path)

    assert whoami_with((tmp_path / "admin-token").read_text().strip()).status_code == 200
    assert mode_of(tmp_path / "admin-token") == 0o600


def test_it_creates_the_admin_under_the_given_name(tmp_path):
    output = bootstrap(tmp_path, username="ops")

    assert get_user_model().objects.get(username="ops").is_superuser
    assert "Created admin user 'ops'" in output
