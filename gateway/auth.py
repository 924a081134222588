"""Who may call a service: its token, sent plainly or as an EAS SDK signature.

- `Authorization: <token>` (what EAS documents for curl) or `Authorization: Bearer <token>`.
- `Authorization: EAS <signature>`, as the official SDKs (eas-prediction and the Java/Go ones) sign:
  base64(HMAC-SHA1(token, "POST\\n<md5hex(body)>\\n<Content-Type>\\n<Date>\\n/api/predict/<service>")).
  The body's MD5 is computed here, so a changed body fails the signature; a Content-MD5 header that does not
  match the body is refused with its own message; the Date must be within `max_skew` seconds of our clock
  (against replaying a captured request much later).

Each check returns None when the caller may proceed, else the message of the 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from email.utils import parsedate_to_datetime

MISSING = ("missing Authorization header: send the service token (Authorization: <token>) "
           "or sign the request as the EAS SDK does (Authorization: EAS <signature>)")


def check(tokens, authorization: bytes | None, *, method: str, body: bytes, content_type: bytes, date: bytes,
          content_md5: bytes | None, resources: tuple[str, ...], max_skew: float) -> str | None:
    """`tokens`: the tokens accepted (one service's, or each member's of a service group)."""
    if not authorization:
        return MISSING
    if authorization[:4] == b"EAS ":
        return _check_signature(tokens, authorization[4:].strip(), method=method, body=body,
                                content_type=content_type, date=date, content_md5=content_md5,
                                resources=resources, max_skew=max_skew)
    presented = authorization[7:].strip() if authorization[:7].lower() == b"bearer " else authorization.strip()
    for token in tokens:
        if token and hmac.compare_digest(presented, token):
            return None
    return "wrong token for this service (Authorization must be the service's token)"


def _check_signature(tokens, signature: bytes, *, method: str, body: bytes, content_type: bytes, date: bytes,
                     content_md5: bytes | None, resources: tuple[str, ...], max_skew: float) -> str | None:
    body_md5 = hashlib.md5(body).hexdigest()  # noqa: S324 -- the EAS protocol's choice, not ours
    if content_md5 is not None and content_md5.decode("latin-1").strip().lower() != body_md5:
        return "Content-MD5 does not match the body (it must be the hex MD5 of the body as sent)"
    if not date:
        return "a signed request needs a Date header (it is part of the signature)"
    problem = _date_problem(date.decode("latin-1"), max_skew)
    if problem:
        return problem
    for resource in resources:
        message = f"{method}\n{body_md5}\n{content_type.decode('latin-1')}\n{date.decode('latin-1')}\n{resource}"
        for token in tokens:
            if not token:
                continue
            digest = hmac.new(token, message.strip().encode("utf-8"), hashlib.sha1).digest()
            if hmac.compare_digest(base64.b64encode(digest), signature):
                return None
    return ("bad signature: expected base64(HMAC-SHA1(token, \"POST\\n<md5hex(body)>\\n<Content-Type>\\n<Date>\\n"
            f"{resources[0]}\")) with this service's token")


def _date_problem(date: str, max_skew: float) -> str | None:
    try:
        sent = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return f"unreadable Date header {date!r} (expected e.g. 'Mon, 02 Jan 2006 15:04:05 GMT')"
    if max_skew and abs(time.time() - sent) > max_skew:
        return (f"the Date header {date!r} is more than {max_skew:g} s away from the gateway's clock "
                "(the SDK stamps local time as GMT: run clients in UTC, or correct the clock)")
    return None


def sign(token: str, body: bytes, content_type: str, date: str, service: str) -> str:
    """What the EAS SDK sends (used by tests and the bench; the gateway only verifies)."""
    message = f"POST\n{hashlib.md5(body).hexdigest()}\n{content_type}\n{date}\n/api/predict/{service}"  # noqa: S324
    digest = hmac.new(token.encode(), message.encode(), hashlib.sha1).digest()
    return "EAS " + base64.b64encode(digest).decode()
