"""Request signatures, computed as the official SDKs compute them (no SDK imported).

- ACS3-HMAC-SHA256 for the control-plane API with an AccessKey pair, as alibabacloud_tea_openapi's
  `Utils.get_authorization` does: the canonical request and the signature are contracts/acs3.py's, the ones
  the server verifies with.
- EAS's service-token signature for prediction requests, as the eas_prediction SDK's PredictClient does:
  `Authorization: EAS base64(HMAC-SHA1(token, "POST\\n<md5hex(body)>\\n<content-type>\\n<date>\\n<path>"))`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote

from contracts import acs3

API_VERSION = "2021-07-01"


def canonical_query(query: dict[str, str]) -> str:
    """Keys sorted, values percent-encoded with only `~` left as is (a space is %20): the SDK's encoding,
    which is also what this client sends on the wire, so the server's canonical form is the same."""
    return "&".join(f"{quote(key, safe='~')}={quote(str(value), safe='~')}" for key, value in sorted(query.items()))


def acs3_headers(*, method: str, host: str, path: str, query: dict[str, str], body: bytes, content_type: str,
                 access_key_id: str, access_key_secret: str, now: datetime | None = None,
                 nonce: str | None = None) -> dict[str, str]:
    """The headers that authenticate one request; `path` as sent (already percent-encoded)."""
    headers = {
        "host": host,
        "x-acs-version": API_VERSION,
        "x-acs-date": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce or secrets.token_hex(16),
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    if content_type:
        headers["content-type"] = content_type
    signed = sorted(headers)
    canonical = acs3.canonical_request(method=method, path=path, query=canonical_query(query),
                                       headers=[(name, headers[name]) for name in signed],
                                       payload_hash=headers["x-acs-content-sha256"])
    headers["Authorization"] = acs3.authorization(access_key_id, signed, acs3.signature(canonical, access_key_secret))
    return headers


def eas_predict_headers(*, token: str, path: str, body: bytes, content_type: str,
                        now: datetime | None = None) -> dict[str, str]:
    """EAS's signed service-token headers for `POST <path>` (path like /api/predict/<service>)."""
    content_md5 = hashlib.md5(body).hexdigest()  # noqa: S324 - the EAS protocol's choice, not ours
    date = format_datetime(now or datetime.now(UTC), usegmt=True)
    string_to_sign = f"POST\n{content_md5}\n{content_type}\n{date}\n{path}"
    digest = hmac.new(token.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return {
        "Content-MD5": content_md5,
        "Content-Type": content_type,
        "Date": date,
        "Authorization": f"EAS {base64.b64encode(digest).decode()}",
    }
