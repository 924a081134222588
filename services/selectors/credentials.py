"""Reads of API credentials: bearer tokens and AccessKey pairs."""

import hashlib

from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet

from services.encryption import decrypt
from services.errors import NotFound
from services.models import AccessKey, ApiToken


def token_digest(plaintext: str) -> str:
    """How a token is stored: its SHA-256, so a leaked database does not leak usable tokens."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _usable_first_newest_first(queryset: QuerySet) -> QuerySet:
    is_revoked = ExpressionWrapper(Q(revoked_at__isnull=False), output_field=BooleanField())
    return queryset.annotate(is_revoked=is_revoked).order_by("is_revoked", "-created_at", "-pk")


def api_tokens_of(user) -> QuerySet[ApiToken]:
    """The user's tokens, usable ones first, newest first."""
    return _usable_first_newest_first(ApiToken.objects.filter(user=user))


def access_keys_of(user) -> QuerySet[AccessKey]:
    """The user's AccessKeys, usable ones first, newest first."""
    return _usable_first_newest_first(AccessKey.objects.filter(user=user))


def access_key_of(user, access_key_id: str) -> AccessKey:
    """One of the user's AccessKeys, revoked or not; another user's is as absent as one that never existed."""
    access_key = access_keys_of(user).filter(access_key_id=access_key_id).first()
    if access_key is None:
        raise NotFound(f"You have no AccessKey {access_key_id}.", code="AccessKeyNotFound")
    return access_key


def api_token_of(user, token_id: int) -> ApiToken:
    """One of the user's API tokens, revoked or not; another user's is as absent as one that never existed."""
    token = api_tokens_of(user).filter(pk=token_id).first()
    if token is None:
        raise NotFound(f"You have no API token {token_id}.", code="TokenNotFound")
    return token


def api_token_by_plaintext(plaintext: str) -> ApiToken | None:
    """The token row for a presented token, revoked or not (the caller tells the two apart)."""
    return ApiToken.objects.select_related("user").filter(digest=token_digest(plaintext)).first()


def access_key_by_id(access_key_id: str) -> AccessKey | None:
    return AccessKey.objects.select_related("user").filter(access_key_id=access_key_id).first()


def access_key_secret(access_key: AccessKey) -> str:
    """The plaintext secret, needed to recompute a signature. Never log it."""
    return decrypt(access_key.secret_encrypted)


def project_storage_credentials(project) -> tuple[str, str] | None:
    """The project's S3 / OSS access key pair for its sources, or None. Never log the secret."""
    if not project.storage_access_key_id or not project.storage_secret_encrypted:
        return None
    return project.storage_access_key_id, decrypt(project.storage_secret_encrypted)
