"""`manage.py ferry_bootstrap`: a fresh installation gets a default project, an admin and an API token.

Idempotent, so `make run` can call it on every start: a second run changes nothing.
"""

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from services.models import Cluster, ClusterGrant, Project, ProjectMembership, ProjectRole
from services.selectors.credentials import api_token_by_plaintext
from services.writes.credentials import api_token_create

ADMIN_TOKEN_NAME = "admin (make run)"


class Command(BaseCommand):
    help = "Creates the default project, an admin user (password in <var>/admin-password) and an API token."

    def add_arguments(self, parser):
        parser.add_argument("--var-dir", type=Path, default=None, help="Where to write the files (default: VAR_DIR).")
        parser.add_argument("--username", default="admin", help="The admin to create when no superuser exists.")

    def handle(self, *args, var_dir: Path | None, username: str, **options):
        var_dir = Path(var_dir or settings.VAR_DIR)
        var_dir.mkdir(parents=True, exist_ok=True)
        project, _ = Project.objects.get_or_create(name=settings.FERRY_DEFAULT_PROJECT)
        _ensure_default_cluster_granted(project)
        admin = self._ensure_admin(username, var_dir / "admin-password")
        _ensure_owner(project, admin)
        self._ensure_admin_token(admin, var_dir / "admin-token")

    def _ensure_admin(self, username: str, password_file: Path):
        admin = _existing_admin(username)
        if admin is not None:
            self.stdout.write(f"Admin user '{admin.get_username()}' exists.")
            return admin
        password = secrets.token_urlsafe(18)
        with transaction.atomic():  # no admin without its password file, and no file for a user not created
            admin = get_user_model().objects.create_superuser(username=username, email="", password=password)
            write_secret_file(password_file, password + "\n")
        self.stdout.write(f"Created admin user '{username}'; its password is in {_shown(password_file)}")
        return admin

    def _ensure_admin_token(self, admin, token_file: Path) -> None:
        # A token file left over from an earlier database would only cause confusing 401s: replace it.
        if token_file.exists() and _is_usable_token(token_file.read_text().strip()):
            return
        with transaction.atomic():
            _, plaintext = api_token_create(user=admin, name=ADMIN_TOKEN_NAME)
            write_secret_file(token_file, plaintext + "\n")
        self.stdout.write(f"Wrote an API token of '{admin.get_username()}' to {_shown(token_file)}")


def _existing_admin(username: str):
    """The named superuser, else the oldest one; None when there is no superuser at all."""
    users = get_user_model().objects
    superusers = users.filter(is_superuser=True).order_by("pk")
    admin = superusers.filter(username=username).first() or superusers.first()
    if admin is None and users.filter(username=username).exists():
        raise CommandError(f"User '{username}' exists but is not a superuser; choose another --username.")
    return admin


def _ensure_default_cluster_granted(project: Project) -> None:
    """The default project deploys to the default (local) cluster out of the box (docs/security.md)."""
    default = Cluster.objects.filter(is_default=True).first()
    if default is not None:
        ClusterGrant.objects.get_or_create(project=project, cluster=default)


def _ensure_owner(project: Project, user) -> None:
    membership, created = ProjectMembership.objects.get_or_create(
        project=project, user=user, defaults={"role": ProjectRole.OWNER}
    )
    if not created and membership.role != ProjectRole.OWNER:
        membership.role = ProjectRole.OWNER
        membership.save(update_fields=["role"])


def _is_usable_token(plaintext: str) -> bool:
    token = api_token_by_plaintext(plaintext) if plaintext else None
    return token is not None and token.revoked_at is None and token.user.is_active


def write_secret_file(path: Path, content: str) -> None:
    """Writes a file only its owner can read, at no moment readable by others.

    The file is born 0600 (O_EXCL, so never an existing file someone else prepared), then renamed over the
    target, so readers see the old content or the new, never half.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _shown(path: Path) -> str:
    """Relative to the working directory when inside it (var/admin-password), otherwise absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
