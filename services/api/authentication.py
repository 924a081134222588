"""How the REST API knows who is calling: bearer tokens and ACS3-HMAC-SHA256 signed requests.

Both are what the official EAS SDK (alibabacloud-eas20210701) sends: `Config(bearer_token=...)` puts the token
in `x-acs-bearer-token`, `Config(access_key_id=..., access_key_secret=...)` signs each request the way
alibabacloud_tea_openapi's `Utils.get_authorization` does. Failures raise DRF's AuthenticationFailed; the EAS
exception handler turns them into a 401 {"Code", "Message", "RequestId"} body. Messages say what is wrong and
never contain a secret.
"""

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, quote

from django.conf import settings
from django.core.cache import cache
from django.http.request import RawPostDataException
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.permissions import SAFE_METHODS

from contracts import acs3
from services.models import AccessKey, CredentialScope
from services.selectors.credentials import access_key_by_id, access_key_secret, api_token_by_plaintext
from services.writes.credentials import access_key_mark_used, api_token_mark_used

logger = logging.getLogger("ferry.auth")

ACS3_ALGORITHM = acs3.ALGORITHM
# Without these signed, a captured request could be replayed elsewhere, later, or with another body.
REQUIRED_SIGNED_HEADERS = ("host", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")
NONCE_PATTERN = re.compile(r"[!-~]{1,128}")  # printable ASCII without spaces: safe inside a cache key
TOKEN_MAX_LENGTH = 256
HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>`, or the EAS SDK's `x-acs-bearer-token: <token>`."""

    def authenticate(self, request):
        plaintext = _presented_bearer_token(request)
        if plaintext is None:
            return None
        token = api_token_by_plaintext(plaintext) if len(plaintext) <= TOKEN_MAX_LENGTH else None
        if token is None:
            raise AuthenticationFailed("The bearer token is not valid.")
        if token.revoked_at is not None:
            raise AuthenticationFailed(f"The bearer token {token.prefix}… has been revoked.")
        if not token.user.is_active:
            raise AuthenticationFailed("The user of this bearer token is inactive.")
        credential_limits_check(token, request, f"The bearer token {token.prefix}…")
        api_token_mark_used(token=token)
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="ferry"'


def _presented_bearer_token(request) -> str | None:
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        credentials = credentials.strip()
        if not credentials or " " in credentials:
            raise AuthenticationFailed("Malformed Authorization header: expected 'Bearer <token>'.")
        return credentials
    sdk_token = request.META.get("HTTP_X_ACS_BEARER_TOKEN")
    if sdk_token is not None:
        if not sdk_token.strip():
            raise AuthenticationFailed("The x-acs-bearer-token header is empty.")
        return sdk_token.strip()
    return None


@dataclass(frozen=True)
class Acs3Authorization:
    """The parts of `Authorization: ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`."""

    access_key_id: str
    signed_headers: list[str]
    signature: str


class AccessKeySignatureAuthentication(BaseAuthentication):
    """AccessKey pairs: requests signed with ACS3-HMAC-SHA256 over method, path, query, headers and body."""

    def authenticate(self, request):
        authorization = _parse_acs3_authorization(request.META.get("HTTP_AUTHORIZATION", ""))
        if authorization is None:
            return None
        if request.META.get("HTTP_X_ACS_SECURITY_TOKEN"):
            raise AuthenticationFailed("STS security tokens are not supported; sign with a Ferry AccessKey.")
        _check_required_headers_signed(authorization)
        _check_date_fresh(request.META.get("HTTP_X_ACS_DATE"))
        nonce = _valid_nonce(request.META.get("HTTP_X_ACS_SIGNATURE_NONCE"))
        payload_hash = _check_body_hash(request)
        access_key = _usable_access_key(authorization.access_key_id)
        _check_signature(request, authorization, payload_hash, _secret_of(access_key))
        # Only a verified request may spend a nonce, or anyone could block a client by guessing its nonces.
        _spend_nonce(access_key.access_key_id, nonce)
        credential_limits_check(access_key, request, f"AccessKey {access_key.access_key_id}")
        access_key_mark_used(access_key=access_key)
        return access_key.user, access_key

    def authenticate_header(self, request):
        return ACS3_ALGORITHM


def credential_limits_check(credential, request, what: str) -> None:
    """A credential's own limits, beyond its user's role: its expiry, and a read-only scope (safe methods only)."""
    if credential.expires_at is not None and credential.expires_at <= timezone.now():
        raise AuthenticationFailed(f"{what} expired at {credential.expires_at.isoformat()}.")
    if credential.scope == CredentialScope.READ_ONLY and request.method not in SAFE_METHODS:
        raise PermissionDenied(f"{what} is read-only: it may only read (GET, HEAD, OPTIONS).")


def _parse_acs3_authorization(header: str) -> Acs3Authorization | None:
    """None when the header is some other scheme (another authenticator's business)."""
    scheme, _, params = header.strip().partition(" ")
    if scheme.upper().startswith("ACS3-") and scheme != ACS3_ALGORITHM:
        raise AuthenticationFailed(f"Signature algorithm {scheme} is not supported; use {ACS3_ALGORITHM}.")
    if scheme.lower() == "acs":
        raise AuthenticationFailed(
            f"HMAC-SHA1 (ROA v1) signatures are not supported; use {ACS3_ALGORITHM}, the SDK's default."
        )
    if scheme != ACS3_ALGORITHM:
        return None
    fields = {}
    for part in params.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value.strip()
    complete = all(fields.get(name) for name in ("Credential", "SignedHeaders", "Signature"))
    if not complete or not HEX_SHA256.fullmatch(fields["Signature"]):
        raise AuthenticationFailed(
            f"Malformed Authorization header: expected '{ACS3_ALGORITHM} Credential=<AccessKeyId>,"
            "SignedHeaders=<h1;h2;...>,Signature=<hex>'."
        )
    return Acs3Authorization(
        access_key_id=fields["Credential"],
        signed_headers=fields["SignedHeaders"].split(";"),
        signature=fields["Signature"].lower(),
    )


def _check_required_headers_signed(authorization: Acs3Authorization) -> None:
    signed = {name.lower() for name in authorization.signed_headers}
    missing = [name for name in REQUIRED_SIGNED_HEADERS if name not in signed]
    if missing:
        raise AuthenticationFailed(f"These headers must be signed: {', '.join(missing)}.")


def _check_date_fresh(value: str | None) -> None:
    if not value:
        raise AuthenticationFailed("The x-acs-date header is missing.")
    signed_at = _parse_utc_timestamp(value)
    if signed_at is None:
        raise AuthenticationFailed(f"x-acs-date {value!r} is not an ISO 8601 UTC time like 2026-11-21T20:55:47Z.")
    max_skew = settings.FERRY_SIGNATURE_MAX_SKEW_SECONDS
    skew = abs((timezone.now() - signed_at).total_seconds())
    if skew > max_skew:
        raise AuthenticationFailed(
            f"x-acs-date {value} is {int(skew)} seconds away from the server's clock (at most {max_skew} "
            "allowed): the request is stale or the client's clock is wrong."
        )


def _parse_utc_timestamp(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.utcoffset() != timedelta(0):
        return None  # naive or another zone: the SDK always sends UTC with a Z
    return parsed


def _check_body_hash(request) -> str:
    """The hex SHA-256 of the body as received; it must be the one the client declared (and signed)."""
    actual = hashlib.sha256(_raw_body(request)).hexdigest()
    declared = request.META.get("HTTP_X_ACS_CONTENT_SHA256", "").strip().lower()
    if declared != actual:
        raise AuthenticationFailed("The request body does not match its x-acs-content-sha256 header.")
    return actual


def _raw_body(request) -> bytes:
    # Read from the Django request before DRF parses it; Django keeps the bytes for the parser to reuse.
    django_request = getattr(request, "_request", request)
    try:
        return django_request.body
    except RawPostDataException as exc:
        raise AuthenticationFailed("The request body was consumed before its signature could be checked.") from exc


def _usable_access_key(access_key_id: str) -> AccessKey:
    access_key = access_key_by_id(access_key_id) if len(access_key_id) <= 32 else None
    if access_key is None:
        raise AuthenticationFailed(f"AccessKeyId {access_key_id!r} does not exist.")
    if access_key.revoked_at is not None:
        raise AuthenticationFailed(f"AccessKey {access_key.access_key_id} has been revoked.")
    if not access_key.user.is_active:
        raise AuthenticationFailed(f"The user of AccessKey {access_key.access_key_id} is inactive.")
    return access_key


def _secret_of(access_key: AccessKey) -> str:
    try:
        return access_key_secret(access_key)
    except ValueError as exc:
        logger.error("Could not decrypt the secret of AccessKey %s: %s", access_key.access_key_id, exc)
        raise AuthenticationFailed(
            f"AccessKey {access_key.access_key_id} cannot be verified: the server cannot decrypt its secret "
            "(was FERRY_ENCRYPTION_KEY or SECRET_KEY changed?). Create a new AccessKey."
        ) from exc


def _check_signature(request, authorization: Acs3Authorization, payload_hash: str, secret: str) -> None:
    expected = acs3.signature(canonical_request(request, authorization, payload_hash), secret)
    if not hmac.compare_digest(expected, authorization.signature):
        raise AuthenticationFailed(
            "The request signature does not match: check the AccessKeySecret, and that nothing changed the "
            "request (path, query, signed headers, body) after it was signed."
        )


def canonical_request(request, authorization: Acs3Authorization, payload_hash: str) -> str:
    """The request as received, in the form contracts/acs3.py signs (the one the CLI and the SDK sign)."""
    return acs3.canonical_request(
        method=request.method,
        path=_canonical_uri(request),
        query=_canonical_query(request.META.get("QUERY_STRING", "")),
        headers=_signed_header_values(request, authorization.signed_headers),
        payload_hash=payload_hash,
    )


def _canonical_uri(request) -> str:
    """The path as the client sent it, still percent-encoded (what the SDK signs)."""
    raw_uri = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")  # gunicorn, uWSGI
    if raw_uri and raw_uri.startswith("/"):
        return raw_uri.split("?", 1)[0]
    # Servers that pass only the decoded path: encode it the way the SDK encodes path parameters.
    return quote(request.path, safe="/~")


def _canonical_query(query_string: str) -> str:
    """Keys sorted, values percent-encoded as the SDK does, from the raw query (not a re-encoded dict)."""
    pairs = parse_qsl(query_string, keep_blank_values=True)
    seen = set()
    for key, _ in pairs:
        if key in seen:
            # The SDK never repeats a parameter; allowing it would let a signed value hide behind another.
            raise AuthenticationFailed(f"Query parameter {key!r} appears more than once.")
        seen.add(key)
    return "&".join(f"{key}={quote(value, safe='~')}" for key, value in sorted(pairs))


def _signed_header_values(request, signed_headers: list[str]) -> list[tuple[str, str]]:
    values = []
    for name in signed_headers:
        value = request.headers.get(name)
        if value is None:
            raise AuthenticationFailed(f"Signed header {name!r} is missing from the request.")
        values.append((name, value))
    return values


def _valid_nonce(nonce: str | None) -> str:
    if not nonce:
        raise AuthenticationFailed("The x-acs-signature-nonce header is missing.")
    if not NONCE_PATTERN.fullmatch(nonce):
        raise AuthenticationFailed("x-acs-signature-nonce must be 1 to 128 printable characters without spaces.")
    return nonce


def _spend_nonce(access_key_id: str, nonce: str) -> None:
    # Twice the skew: a replay is caught for as long as its x-acs-date would still be accepted.
    timeout = 2 * settings.FERRY_SIGNATURE_MAX_SKEW_SECONDS
    if not cache.add(f"ferry:acs3-nonce:{access_key_id}:{nonce}", 1, timeout):
        raise AuthenticationFailed("This x-acs-signature-nonce was already used: the request is a replay.")



class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "BearerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (ferry_...). The EAS SDK sends it as `x-acs-bearer-token`; both work.",
        }


class AccessKeySignatureScheme(OpenApiAuthenticationExtension):
    target_class = AccessKeySignatureAuthentication
    name = "AccessKeySignature"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                f"`{ACS3_ALGORITHM} Credential=<AccessKeyId>,SignedHeaders=<...>,Signature=<hex>`, as the "
                "EAS SDK signs requests made with an AccessKey pair."
            ),
        }
