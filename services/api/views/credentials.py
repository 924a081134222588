"""Ferry extensions to the EAS API: who am I, and my AccessKeys and API tokens.

Secrets (AccessKeySecret, Token) appear only in the answer to the POST that created them. A credential created
with another one is never more powerful than it (Scope, ExpireTime), and goes when it is revoked.
"""

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from services.errors import Forbidden, NotFound
from services.models import CredentialScope
from services.selectors.credentials import access_key_of, access_keys_of, api_token_of, api_tokens_of
from services.writes.credentials import (
    access_key_create,
    access_key_revoke,
    api_token_create,
    api_token_revoke,
    project_storage_credentials_delete,
    project_storage_credentials_set,
)

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # EAS's timestamps: ISO 8601, UTC, whole seconds
TAGS = ["Ferry credentials"]


def _eas_time(source: str, **kwargs) -> serializers.DateTimeField:
    return serializers.DateTimeField(source=source, format=TIME_FORMAT, read_only=True, **kwargs)


# No "enum": drf-spectacular would name it a generic StatusEnum that other Status fields would collide with.
@extend_schema_field({"type": "string", "description": "Active, or Revoked.", "example": "Active"})
class CredentialStatusField(serializers.Field):
    """Active or Revoked, from revoked_at (read from the whole object: DRF renders a None attribute as null)."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, credential):
        return "Active" if credential.revoked_at is None else "Revoked"


class RequestIdSerializer(serializers.Serializer):
    RequestId = serializers.CharField()


class FerryProjectRoleSerializer(serializers.Serializer):
    Name = serializers.CharField(source="project.name")
    Role = serializers.CharField(source="role")


class FerryWhoAmISerializer(RequestIdSerializer):
    UserName = serializers.CharField()
    Projects = FerryProjectRoleSerializer(many=True)


class FerryAccessKeySerializer(serializers.Serializer):
    AccessKeyId = serializers.CharField(source="access_key_id", read_only=True)
    Description = serializers.CharField(source="description", read_only=True)
    CreateTime = _eas_time("created_at")
    LastUsedTime = _eas_time("last_used_at", allow_null=True)
    ExpireTime = _eas_time("expires_at", allow_null=True)
    Scope = serializers.CharField(source="scope", read_only=True)
    Status = CredentialStatusField()


class FerryAccessKeyListSerializer(RequestIdSerializer):
    AccessKeys = FerryAccessKeySerializer(many=True)


class CredentialLimitsRequestSerializer(serializers.Serializer):
    Scope = serializers.ChoiceField(choices=CredentialScope.values, required=False,
                                    help_text="read-write (the default) or read-only; never more than the caller's.")
    ExpiresInSeconds = serializers.IntegerField(min_value=60, max_value=10 * 366 * 86400, required=False,
                                                help_text="Without it: no expiry, or the caller's credential's.")


class FerryAccessKeyCreateRequestSerializer(CredentialLimitsRequestSerializer):
    Description = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class FerryAccessKeyCreatedSerializer(FerryAccessKeySerializer):
    AccessKeySecret = serializers.CharField(help_text="Shown only in this answer; store it now.")
    RequestId = serializers.CharField()


class FerryApiTokenSerializer(serializers.Serializer):
    Id = serializers.IntegerField(source="pk", read_only=True)
    Name = serializers.CharField(source="name", read_only=True)
    Prefix = serializers.CharField(source="prefix", read_only=True)
    CreateTime = _eas_time("created_at")
    LastUsedTime = _eas_time("last_used_at", allow_null=True)
    ExpireTime = _eas_time("expires_at", allow_null=True)
    Scope = serializers.CharField(source="scope", read_only=True)
    Status = CredentialStatusField()


class FerryApiTokenListSerializer(RequestIdSerializer):
    Tokens = FerryApiTokenSerializer(many=True)


class FerryApiTokenCreateRequestSerializer(CredentialLimitsRequestSerializer):
    Name = serializers.CharField(max_length=100)


class FerryApiTokenCreatedSerializer(FerryApiTokenSerializer):
    Token = serializers.CharField(help_text="Shown only in this answer; store it now.")
    RequestId = serializers.CharField()


class FerryRevokedSerializer(RequestIdSerializer):
    Message = serializers.CharField()


def _answer(request, data: dict) -> Response:
    return Response({**data, "RequestId": getattr(request, "request_id", "")})


class WhoAmIView(APIView):
    @extend_schema(
        operation_id="FerryWhoAmI", tags=TAGS, responses=FerryWhoAmISerializer,
        summary="The calling user and their projects (a Ferry extension).",
    )
    def get(self, request):
        memberships = request.user.memberships.select_related("project").order_by("project__name")
        return _answer(
            request,
            {
                "UserName": request.user.get_username(),
                "Projects": FerryProjectRoleSerializer(memberships, many=True).data,
            },
        )


# GET lists the caller's credentials of one kind, POST creates one. A subclass names the kind's parts; the rules
# (scope, expiry, what the calling credential allows) are the write's, not the view's. Comments, not docstrings:
# the OpenAPI document would show a docstring as each operation's description.
class CredentialsView(APIView):
    listing: str  # the list's key in the answer
    serializer: type[serializers.Serializer]
    create_request: type[serializers.Serializer]
    secret_field: str  # where the answer to the POST carries the secret, this once
    list_of: Callable  # the selector: user -> their credentials of this kind
    create: Callable  # the write, given the kind's own fields: (user, fields, **limits) -> (credential, secret)

    def get(self, request):
        return _answer(request, {self.listing: self.serializer(self.list_of(request.user), many=True).data})

    def post(self, request):
        params = self.create_request(data=request.data)
        params.is_valid(raise_exception=True)
        fields = params.validated_data
        seconds = fields.get("ExpiresInSeconds")
        # request.auth: the token or AccessKey the request came with; None from a signed-in session.
        credential, secret = self.create(request.user, fields, scope=fields.get("Scope"), minted_by=request.auth,
                                         expires_at=timezone.now() + timedelta(seconds=seconds) if seconds else None)
        return _answer(request, {**self.serializer(credential).data, self.secret_field: secret})


# DELETE revokes one of the caller's credentials of one kind, and every credential created with it.
class CredentialDetailView(APIView):
    lookup_url_kwarg: str  # the URL's name for the credential
    find: Callable  # the selector: (user, id) -> their credential, or NotFound
    revoke: Callable  # the write: credential -> what the answer says

    def delete(self, request, **url):
        credential = self.find(request.user, url[self.lookup_url_kwarg])
        return _answer(request, {"Message": self.revoke(credential)})


@extend_schema_view(
    get=extend_schema(operation_id="FerryListAccessKeys", tags=TAGS, responses=FerryAccessKeyListSerializer,
                      summary="Lists your AccessKeys (never their secrets)."),
    post=extend_schema(operation_id="FerryCreateAccessKey", tags=TAGS,
                       request=FerryAccessKeyCreateRequestSerializer, responses=FerryAccessKeyCreatedSerializer,
                       summary="Creates an AccessKey pair; the secret is returned only this once."),
)
class AccessKeyListView(CredentialsView):
    listing, serializer, secret_field = "AccessKeys", FerryAccessKeySerializer, "AccessKeySecret"
    create_request = FerryAccessKeyCreateRequestSerializer
    list_of = staticmethod(access_keys_of)

    @staticmethod
    def create(user, fields: dict, **limits):
        return access_key_create(user=user, description=fields["Description"], **limits)


@extend_schema_view(
    delete=extend_schema(operation_id="FerryRevokeAccessKey", tags=TAGS, responses=FerryRevokedSerializer,
                         summary="Revokes one of your AccessKeys, and every credential created with it."),
)
class AccessKeyDetailView(CredentialDetailView):
    lookup_url_kwarg = "access_key_id"
    find = staticmethod(access_key_of)

    @staticmethod
    def revoke(credential) -> str:
        access_key_revoke(access_key=credential)
        return f"Revoked AccessKey {credential.access_key_id}."


@extend_schema_view(
    get=extend_schema(operation_id="FerryListTokens", tags=TAGS, responses=FerryApiTokenListSerializer,
                      summary="Lists your API tokens (only their prefixes)."),
    post=extend_schema(operation_id="FerryCreateToken", tags=TAGS,
                       request=FerryApiTokenCreateRequestSerializer, responses=FerryApiTokenCreatedSerializer,
                       summary="Creates a bearer token; the token is returned only this once."),
)
class ApiTokenListView(CredentialsView):
    listing, serializer, secret_field = "Tokens", FerryApiTokenSerializer, "Token"
    create_request = FerryApiTokenCreateRequestSerializer
    list_of = staticmethod(api_tokens_of)

    @staticmethod
    def create(user, fields: dict, **limits):
        return api_token_create(user=user, name=fields["Name"], **limits)


@extend_schema_view(
    delete=extend_schema(operation_id="FerryRevokeToken", tags=TAGS, responses=FerryRevokedSerializer,
                         summary="Revokes one of your API tokens, and every credential created with it."),
)
class ApiTokenDetailView(CredentialDetailView):
    lookup_url_kwarg = "token_id"
    find = staticmethod(api_token_of)

    @staticmethod
    def revoke(credential) -> str:
        api_token_revoke(token=credential)
        return f"Revoked API token {credential.name!r} ({credential.prefix}…)."


class FerryStorageCredentialsSerializer(RequestIdSerializer):
    ProjectName = serializers.CharField()
    AccessKeyId = serializers.CharField(help_text="Empty when none is set; the secret is never shown.")


class FerryStorageCredentialsRequestSerializer(serializers.Serializer):
    AccessKeyId = serializers.CharField(max_length=128)
    AccessKeySecret = serializers.CharField(max_length=1024, trim_whitespace=False)


class ProjectStorageCredentialsView(APIView):
    """The project's S3 / OSS access key for its s3:// and oss:// sources: members see its id, owners set it."""

    def _membership(self, request, project_name: str, *, write: bool):
        membership = request.user.memberships.select_related("project").filter(project__name=project_name).first()
        if membership is None:
            raise NotFound(f"You have no project {project_name}.", code="ProjectNotFound")
        if write and membership.role != "owner":
            raise Forbidden(f"Only owners of project {project_name} set its storage credentials.")
        return membership.project

    @extend_schema(operation_id="FerryDescribeProjectStorageCredentials", tags=TAGS,
                   responses=FerryStorageCredentialsSerializer,
                   summary="The AccessKeyId the project's s3:// and oss:// sources are read with (never the secret).")
    def get(self, request, project_name: str):
        project = self._membership(request, project_name, write=False)
        return _answer(request, {"ProjectName": project.name, "AccessKeyId": project.storage_access_key_id})

    @extend_schema(operation_id="FerrySetProjectStorageCredentials", tags=TAGS,
                   request=FerryStorageCredentialsRequestSerializer, responses=FerryStorageCredentialsSerializer,
                   summary="Sets the project's S3 / OSS access key (owners); the secret is stored encrypted.")
    def put(self, request, project_name: str):
        project = self._membership(request, project_name, write=True)
        params = FerryStorageCredentialsRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        project_storage_credentials_set(project=project, access_key_id=params.validated_data["AccessKeyId"],
                                        secret=params.validated_data["AccessKeySecret"])
        return _answer(request, {"ProjectName": project.name, "AccessKeyId": params.validated_data["AccessKeyId"]})

    @extend_schema(operation_id="FerryDeleteProjectStorageCredentials", tags=TAGS,
                   responses=FerryStorageCredentialsSerializer,
                   summary="Removes the project's S3 / OSS access key (owners): its sources are read anonymously.")
    def delete(self, request, project_name: str):
        project = self._membership(request, project_name, write=True)
        project_storage_credentials_delete(project=project)
        return _answer(request, {"ProjectName": project.name, "AccessKeyId": ""})
