"""Who may do what: projects (EAS workspaces), their members, and the credentials the API accepts."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower, Replace


class Project(models.Model):
    """A workspace (EAS WorkspaceId). Members see and change only their projects' services."""

    name = models.SlugField(max_length=63, unique=True)
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Quotas, set by admins; empty is no limit. A service counts at the most instances it may reach (docs/security.md,
    # Sources, limits and credentials), so the autoscaler can never take a project past them.
    max_instances = models.PositiveIntegerField(null=True, blank=True, help_text="Instances across all services.")
    max_cpu = models.FloatField(null=True, blank=True, help_text="Cores across all instances (metadata.cpu each).")
    max_memory_mb = models.PositiveIntegerField(
        null=True, blank=True, help_text="MB across all instances (metadata.memory each).")
    # The project's own S3 / OSS access key for s3:// and oss:// sources; the secret is encrypted and never shown.
    # Without one, its fetches are anonymous: the platform's credentials never read a project's bucket.
    storage_access_key_id = models.CharField(max_length=128, blank=True)
    storage_secret_encrypted = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            # A project's Kubernetes namespace is its name in lower case with '_' as '-' (deployer/kubernetes/
            # build.py): `team_x` and `Team-X` would share `team-x`'s namespace, and so its Secrets and pods.
            models.UniqueConstraint(
                Replace(Lower("name"), models.Value("_"), models.Value("-")), name="unique_project_namespace",
                violation_error_message="A project whose name differs only in case or '_' / '-' exists already: "
                                        "both would share one Kubernetes namespace."),
        ]

    def __str__(self) -> str:
        return self.name


class ProjectRole(models.TextChoices):
    VIEWER = "viewer", "Viewer (read only)"
    DEVELOPER = "developer", "Developer (create and change services)"
    OWNER = "owner", "Owner (also manages members)"


class ProjectMembership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=ProjectRole.choices, default=ProjectRole.DEVELOPER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="unique_project_member")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"

    @property
    def can_write(self) -> bool:
        return self.role in (ProjectRole.DEVELOPER, ProjectRole.OWNER)


class CredentialScope(models.TextChoices):
    READ_WRITE = "read-write", "Read and write (what its user may do)"
    READ_ONLY = "read-only", "Read only (GET requests)"


class CredentialLimits(models.Model):
    """What a credential may do beyond its user's role: its scope and expiry, and the credential it was created
    with, so that revoking that one revokes this one too (docs/security.md, Sources, limits and credentials)."""

    scope = models.CharField(max_length=16, choices=CredentialScope.choices, default=CredentialScope.READ_WRITE)
    expires_at = models.DateTimeField(null=True, blank=True)
    minted_by_token = models.ForeignKey("services.ApiToken", null=True, blank=True, on_delete=models.CASCADE,
                                        related_name="+")
    minted_by_access_key = models.ForeignKey("services.AccessKey", null=True, blank=True,
                                             on_delete=models.CASCADE, related_name="+")

    class Meta:
        abstract = True


class ApiToken(CredentialLimits):
    """A bearer token for the REST API. Only its SHA-256 digest is stored; the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="The first characters, to tell tokens apart.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class AccessKey(CredentialLimits):
    """An AccessKey pair for ACS3-HMAC-SHA256 signed requests, as the EAS SDK sends them.

    The secret is needed to verify signatures, so it is stored encrypted (not hashed) and shown only once.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_keys")
    access_key_id = models.CharField(max_length=32, unique=True)
    secret_encrypted = models.TextField()
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.access_key_id
