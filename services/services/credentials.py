"""Writes of API credentials: bearer tokens and AccessKey pairs.

Plaintext secrets are returned to the caller once and never logged; tokens are stored as SHA-256 digests,
AccessKey secrets encrypted (a signature check needs the secret itself).
"""

import logging
import secrets
import string
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from services.encryption import encrypt
from services.models import AccessKey, ApiToken
from services.selectors.credentials import token_digest

logger = logging.getLogger("ferry.credentials")

TOKEN_PREFIX = "ferry_"
ACCESS_KEY_ID_PREFIX = "FAK"
ACCESS_KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
# Recording every use would turn each authenticated read into a write; a minute is precise enough to
# tell a forgotten credential from a live one.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=plaintext[:8], digest=token_digest(plaintext))
    logger.info("Created API token %r (%s…) of %s", token.name, token.prefix, user)
    return token, plaintext


def api_token_revoke(*, token: ApiToken) -> None:
    _revoke(token)
    logger.info("Revoked API token %r (%s…) of %s", token.name, token.prefix, token.user)


def api_token_mark_used(*, token: ApiToken) -> None:
    _mark_used(token)


def access_key_create(*, user, description: str = "") -> tuple[AccessKey, str]:
    access_key_id = ACCESS_KEY_ID_PREFIX + "".join(secrets.choice(ACCESS_KEY_ID_ALPHABET) for _ in range(17))
    secret = secrets.token_urlsafe(30)
    access_key = AccessKey.objects.create(
        user=user, access_key_id=access_key_id, secret_encrypted=encrypt(secret), description=description
    )
    logger.info("Created AccessKey %s of %s", access_key.access_key_id, user)
    return access_key, secret


def access_key_revoke(*, access_key: AccessKey) -> None:
    _revoke(access_key)
    logger.info("Revoked AccessKey %s of %s", access_key.access_key_id, access_key.user)


def access_key_mark_used(*, access_key: AccessKey) -> None:
    _mark_used(access_key)


def _revoke(credential: ApiToken | AccessKey) -> None:
    """Idempotent: revoking twice keeps the first revocation time."""
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
