"""Django admin for operators: projects and members, clusters, and a read-only look at services.

Secrets (service tokens, AccessKey secrets, token digests, kubeconfigs) are never shown here.
"""

from django.contrib import admin

from .models import AccessKey, ApiToken, Cluster, ClusterGrant, Event, Project, ProjectMembership, Service, Version


class MembershipInline(admin.TabularInline):
    model = ProjectMembership
    extra = 1
    autocomplete_fields = ["user"]


class ClusterGrantInline(admin.TabularInline):
    """The clusters the project's members may deploy to and see (docs/security.md, Project boundaries)."""

    model = ClusterGrant
    extra = 1
    fields = ["cluster", "granted_by", "created_at"]
    readonly_fields = ["granted_by", "created_at"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline, ClusterGrantInline]


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "flavor", "is_default", "created_at"]
    exclude = ["kubeconfig_encrypted"]


class VersionInline(admin.TabularInline):
    model = Version
    extra = 0
    can_delete = False
    fields = ["number", "weight", "message", "created_at"]
    readonly_fields = fields


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    """Read-only: changes go through the API or console so they are validated, versioned and reconciled."""

    list_display = ["name", "cluster", "project", "phase", "desired_state", "instance_count", "updated_at"]
    list_filter = ["cluster", "project", "phase"]
    search_fields = ["name", "group"]
    exclude = ["token_encrypted"]
    inlines = [VersionInline]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "service", "type", "reason", "message"]
    list_filter = ["type", "reason"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    exclude = ["digest"]
    readonly_fields = ["user", "name", "prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False  # tokens are created through the API so the plaintext is shown once


@admin.register(AccessKey)
class AccessKeyAdmin(admin.ModelAdmin):
    list_display = ["access_key_id", "user", "description", "created_at", "last_used_at", "revoked_at"]
    exclude = ["secret_encrypted"]
    readonly_fields = ["user", "access_key_id", "description", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False
