"""Writes of API credentials: bearer tokens and AccessKey pairs. The one path that creates, revokes and marks
them used: the REST API, the console and the bootstrap command all call these, and decide none of it themselves.

Plaintext secrets are returned to the caller once and never logged; tokens are stored as SHA-256 digests,
AccessKey secrets encrypted (a signature check needs the secret itself).

A credential made with another one (`minted_by`: the request's token or AccessKey; None from a signed-in session)
is never more powerful than it: it takes its parent's scope unless given one, may not be read-write if its parent
is read-only, and never expires after it (one given no expiry takes its parent's). Revoking a credential revokes
every credential made with it, and theirs. Finding the caller's own credential to revoke is
`selectors.credentials.access_key_of` / `api_token_of`.
"""

import logging
import secrets
import string
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from services.encryption import encrypt
from services.errors import Forbidden, InvalidRequest
from services.models import AccessKey, ApiToken, CredentialScope
from services.selectors.credentials import token_digest

logger = logging.getLogger("ferry.credentials")

TOKEN_PREFIX = "ferry_"
ACCESS_KEY_ID_PREFIX = "FAK"
ACCESS_KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
# Recording every use would turn each authenticated read into a write; a minute is precise enough to
# tell a forgotten credential from a live one.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_token_create(*, user, name: str, scope: str | None = None, expires_at=None,
                     minted_by: ApiToken | AccessKey | None = None) -> tuple[ApiToken, str]:
    """A new bearer token and its plaintext (shown once). `scope` None: the parent's, or read-write."""
    limits = _limits_within(scope, expires_at, minted_by)
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=plaintext[:8], digest=token_digest(plaintext),
                                    **limits)
    logger.info("Created API token %r (%s…) of %s", token.name, token.prefix, user)
    return token, plaintext


def api_token_revoke(*, token: ApiToken) -> None:
    _revoke(token)
    logger.info("Revoked API token %r (%s…) of %s", token.name, token.prefix, token.user)


def api_token_mark_used(*, token: ApiToken) -> None:
    _mark_used(token)


def access_key_create(*, user, description: str = "", scope: str | None = None, expires_at=None,
                      minted_by: ApiToken | AccessKey | None = None) -> tuple[AccessKey, str]:
    """A new AccessKey and its secret (shown once). `scope` None: the parent's, or read-write."""
    limits = _limits_within(scope, expires_at, minted_by)
    access_key_id = ACCESS_KEY_ID_PREFIX + "".join(secrets.choice(ACCESS_KEY_ID_ALPHABET) for _ in range(17))
    secret = secrets.token_urlsafe(30)
    access_key = AccessKey.objects.create(
        user=user, access_key_id=access_key_id, secret_encrypted=encrypt(secret), description=description, **limits
    )
    logger.info("Created AccessKey %s of %s", access_key.access_key_id, user)
    return access_key, secret


def access_key_revoke(*, access_key: AccessKey) -> None:
    _revoke(access_key)
    logger.info("Revoked AccessKey %s of %s", access_key.access_key_id, access_key.user)


def access_key_mark_used(*, access_key: AccessKey) -> None:
    _mark_used(access_key)


def _limits_within(scope: str | None, expires_at, minted_by: ApiToken | AccessKey | None) -> dict:
    if minted_by is not None and not isinstance(minted_by, (ApiToken, AccessKey)):
        raise TypeError(f"minted_by must be an ApiToken, an AccessKey or None, not {type(minted_by).__name__}")
    if scope is None:
        scope = minted_by.scope if minted_by is not None else CredentialScope.READ_WRITE
    if scope not in CredentialScope.values:
        raise InvalidRequest.at("Scope", f"must be one of {', '.join(CredentialScope.values)}")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidRequest.at("ExpiresInSeconds", "must be in the future")
    if minted_by is None:
        return {"scope": scope, "expires_at": expires_at}
    if minted_by.scope == CredentialScope.READ_ONLY and scope != CredentialScope.READ_ONLY:
        raise Forbidden("Scope: a read-only credential cannot create a read-write one.", code="CredentialTooPowerful")
    if minted_by.expires_at is not None:
        if expires_at is None:
            expires_at = minted_by.expires_at
        elif expires_at > minted_by.expires_at:
            raise Forbidden("ExpiresInSeconds: a credential cannot outlive the one that creates it (which expires "
                            f"at {minted_by.expires_at.isoformat()}).", code="CredentialTooPowerful")
    parent = {"minted_by_token": minted_by} if isinstance(minted_by, ApiToken) else {"minted_by_access_key": minted_by}
    return {"scope": scope, "expires_at": expires_at, **parent}


@transaction.atomic
def _revoke(credential: ApiToken | AccessKey) -> None:
    """Idempotent: revoking twice keeps the first revocation time. Credentials made with this one go too."""
    _revoke_one(credential)
    pending = [credential]
    while pending:
        parent = pending.pop()
        field = "minted_by_token" if isinstance(parent, ApiToken) else "minted_by_access_key"
        for model in (ApiToken, AccessKey):
            children = list(model.objects.filter(**{field: parent}))
            for child in children:
                _revoke_one(child)
            pending.extend(children)


def _revoke_one(credential: ApiToken | AccessKey) -> None:
    now = timezone.now()
    updated = type(credential).objects.filter(pk=credential.pk, revoked_at__isnull=True).update(revoked_at=now)
    if updated:
        credential.revoked_at = now
    elif credential.revoked_at is None:
        credential.refresh_from_db(fields=["revoked_at"])


def _mark_used(credential: ApiToken | AccessKey) -> None:
    """Records the use at most once a minute; the conditional UPDATE keeps concurrent requests to one write."""
    now = timezone.now()
    stale_before = now - LAST_USED_RESOLUTION
    if credential.last_used_at is not None and credential.last_used_at > stale_before:
        return
    type(credential).objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale_before), pk=credential.pk
    ).update(last_used_at=now)
    credential.last_used_at = now


def project_storage_credentials_set(*, project, access_key_id: str, secret: str) -> None:
    """The S3 / OSS access key the project's s3:// and oss:// sources are read with (the secret encrypted)."""
    if not access_key_id.strip() or len(access_key_id) > 128 or any(c.isspace() for c in access_key_id):
        raise InvalidRequest.at("AccessKeyId", "must be 1 to 128 characters without spaces")
    if not secret:
        raise InvalidRequest.at("AccessKeySecret", "must not be empty")
    type(project).objects.filter(pk=project.pk).update(storage_access_key_id=access_key_id,
                                                        storage_secret_encrypted=encrypt(secret))
    logger.info("Set the storage access key %s of project %s", access_key_id, project.name)


def project_storage_credentials_delete(*, project) -> None:
    type(project).objects.filter(pk=project.pk).update(storage_access_key_id="", storage_secret_encrypted="")
    logger.info("Removed the storage access key of project %s", project.name)
