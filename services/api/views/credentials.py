"""Ferry extensions to the EAS API: who am I, and my AccessKeys and API tokens.

Secrets (AccessKeySecret, Token) appear only in the answer to the POST that created them. A credential created
with another one is never more powerful than it (Scope, ExpireTime), and goes when it is revoked.
"""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from services.api.errors import NotFound
from services.errors import Forbidden
from services.models import AccessKey, ApiToken, CredentialScope
from services.selectors.credentials import access_keys_of, api_tokens_of
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


def _limits(request, params: dict) -> dict:
    """Scope, expiry and the credential the request came with (None from a session)."""
    minted_by = request.auth if isinstance(request.auth, (ApiToken, AccessKey)) else None
    default_scope = minted_by.scope if minted_by is not None else CredentialScope.READ_WRITE
    seconds = params.get("ExpiresInSeconds")
    return {"scope": params.get("Scope") or default_scope, "minted_by": minted_by,
            "expires_at": timezone.now() + timedelta(seconds=seconds) if seconds else None}


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


class AccessKeyListView(APIView):
    @extend_schema(
        operation_id="FerryListAccessKeys", tags=TAGS, responses=FerryAccessKeyListSerializer,
        summary="Lists your AccessKeys (never their secrets).",
    )
    def get(self, request):
        keys = access_keys_of(request.user)
        return _answer(request, {"AccessKeys": FerryAccessKeySerializer(keys, many=True).data})

    @extend_schema(
        operation_id="FerryCreateAccessKey", tags=TAGS,
        request=FerryAccessKeyCreateRequestSerializer, responses=FerryAccessKeyCreatedSerializer,
        summary="Creates an AccessKey pair; the secret is returned only this once.",
    )
    def post(self, request):
        params = FerryAccessKeyCreateRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        access_key, secret = access_key_create(user=request.user, description=params.validated_data["Description"],
                                               **_limits(request, params.validated_data))
        return _answer(request, {**FerryAccessKeySerializer(access_key).data, "AccessKeySecret": secret})


class AccessKeyDetailView(APIView):
    @extend_schema(
        operation_id="FerryRevokeAccessKey", tags=TAGS, responses=FerryRevokedSerializer,
        summary="Revokes one of your AccessKeys, and every credential created with it.",
    )
    def delete(self, request, access_key_id: str):
        access_key = access_keys_of(request.user).filter(access_key_id=access_key_id).first()
        if access_key is None:
            raise NotFound(f"You have no AccessKey {access_key_id}.", code="AccessKeyNotFound")
        access_key_revoke(access_key=access_key)
        return _answer(request, {"Message": f"Revoked AccessKey {access_key.access_key_id}."})


class ApiTokenListView(APIView):
    @extend_schema(
        operation_id="FerryListTokens", tags=TAGS, responses=FerryApiTokenListSerializer,
        summary="Lists your API tokens (only their prefixes).",
    )
    def get(self, request):
        tokens = api_tokens_of(request.user)
        return _answer(request, {"Tokens": FerryApiTokenSerializer(tokens, many=True).data})

    @extend_schema(
        operation_id="FerryCreateToken", tags=TAGS,
        request=FerryApiTokenCreateRequestSerializer, responses=FerryApiTokenCreatedSerializer,
        summary="Creates a bearer token; the token is returned only this once.",
    )
    def post(self, request):
        params = FerryApiTokenCreateRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        token, plaintext = api_token_create(user=request.user, name=params.validated_data["Name"],
                                            **_limits(request, params.validated_data))
        return _answer(request, {**FerryApiTokenSerializer(token).data, "Token": plaintext})


class ApiTokenDetailView(APIView):
    @extend_schema(
        operation_id="FerryRevokeToken", tags=TAGS, responses=FerryRevokedSerializer,
        summary="Revokes one of your API tokens, and every credential created with it.",
    )
    def delete(self, request, token_id: int):
        token = api_tokens_of(request.user).filter(pk=token_id).first()
        if token is None:
            raise NotFound(f"You have no API token {token_id}.", code="TokenNotFound")
        api_token_revoke(token=token)
        return _answer(request, {"Message": f"Revoked API token {token.name!r} ({token.prefix}…)."})


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
