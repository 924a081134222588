"""Who may call a service: its token, sent plainly or as an EAS SDK signature.

- `Authorization: <token>` (what EAS documents for curl) or `Authorization: Bearer <token>`.
- `Authorization: EAS <signature>`, as the official SDKs (eas-prediction and the Java/Go ones) sign:
  base64(HMAC-SHA1(token, "POST\\n<md5hex(body)>\\n<Content-Type>\\n<Date>\\n/api/predict/<service_name>")),
  where the SDK's service_name may carry a sub-path and a query ("svc/v1/chat?x=1"). The body's MD5 is
  computed here, so a changed body fails the signature; a Content-MD5 header that does not match the body is
  refused with its own message.

Replays. eas-prediction stamps the Date with the machine's *local* time labelled GMT, so a Date tells the
time only up to the client's time-zone offset. Two defences, neither needing the client to run in UTC:
- the band (`date_problem`): the Date must be within `max_skew` of the gateway's clock shifted by a real
  time-zone offset (a quarter-hour multiple, UTC-12:00 .. UTC+14:00); alone, that bounds a replay to about
  a day;
- the memory (`Replays`): when each signature was first seen. A signature first seen more than `max_skew`
  ago is a replay; the same request sent twice within the window (a client retrying in the same second) is
  not. It is keyed by the signature, not by the Date, so clients in different time zones sharing a token
  never collide on a Date label. Kept in this process only: the data plane never waits for Redis.

Each check returns None when the caller may proceed, else the message of the 401.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import time
from email.utils import parsedate_to_datetime
from functools import lru_cache

MISSING = ("missing Authorization header: send the service token (Authorization: <token>) "
           "or sign the request as the EAS SDK does (Authorization: EAS <signature>)")
WRONG_TOKEN = "wrong token for this service (Authorization must be the service's token)"
DEFAULT_MAX_SKEW = 900.0
DEFAULT_MEMORY = 100_000
QUARTER_HOUR = 900.0
# The offsets of the world's time zones: every one is a quarter-hour multiple in this range.
WEST, EAST = -12 * 3600.0, 14 * 3600.0


def check(tokens, authorization: bytes | None, *, method: str, body: bytes, content_type: bytes, date: bytes,
          content_md5: bytes | None, resources: tuple[str, ...], max_skew: float,
          replays: Replays | None = None) -> str | None:
    """`tokens`: the tokens accepted (one service's, or each member's of a service group); `resources`: what a
    signature may name (`signed_resources`); `replays`: the memory of signatures seen (None: the band only)."""
    if not authorization:
        return MISSING
    if authorization[:4] == b"EAS ":
        return _check_signature(tokens, authorization[4:].strip(), method=method, body=body,
                                content_type=content_type, date=date, content_md5=content_md5,
                                resources=resources, max_skew=max_skew, replays=replays)
    presented = authorization[7:].strip() if authorization[:7].lower() == b"bearer " else authorization.strip()
    for token in tokens:
        if token and hmac.compare_digest(presented, token):
            return None
    return WRONG_TOKEN


def signed_resources(service: str, path: str, query: str = "") -> tuple[str, ...]:
    """What a signature for a call of `path` (`query` without its "?") may name: /api/predict/<service>, which
    the SDK signs whatever the sub-path, or the path itself, with or without the query, which the SDK signs
    when its service name carries them."""
    resource = "/api/predict/" + service
    named = (resource,) if path in ("", resource) else (resource, path)
    return (*named, f"{path or resource}?{query}") if query else named


def _check_signature(tokens, signature: bytes, *, method: str, body: bytes, content_type: bytes, date: bytes,
                     content_md5: bytes | None, resources: tuple[str, ...], max_skew: float,
                     replays: Replays | None) -> str | None:
    body_md5 = hashlib.md5(body).hexdigest()  # noqa: S324 -- the EAS protocol's choice, not ours
    if content_md5 is not None and content_md5.decode("latin-1").strip().lower() != body_md5:
        return "Content-MD5 does not match the body (it must be the hex MD5 of the body as sent)"
    if not date:
        return "a signed request needs a Date header (it is part of the signature)"
    date_text = date.decode("latin-1")
    sent = _seconds(date_text)
    if sent is None:
        return f"unreadable Date header {date_text!r} (expected e.g. 'Mon, 02 Jan 2006 15:04:05 GMT')"
    now = time.time()
    problem = date_problem(date_text, sent, now, max_skew) if max_skew else None
    if problem:
        return problem
    if not _signed_by(tokens, signature, f"{method}\n{body_md5}\n{content_type.decode('latin-1')}\n{date_text}\n",
                      resources):
        return ("bad signature: expected base64(HMAC-SHA1(token, \"POST\\n<md5hex(body)>\\n<Content-Type>\\n<Date>\\n"
                f"{resources[0]}\")) with this service's token")
    if not max_skew or replays is None:
        return None
    # Only a verified signature is remembered: forged ones cannot fill the memory.
    return date_problem(date_text, sent, now, max_skew, replays.first_seen(signature, sent, now))


def _signed_by(tokens, signature: bytes, head: str, resources: tuple[str, ...]) -> bool:
    for resource in resources:
        message = (head + resource).strip().encode("utf-8")
        for token in tokens:
            if token and hmac.compare_digest(base64.b64encode(hmac.new(token, message, hashlib.sha1).digest()),
                                             signature):
                return True
    return False


def date_problem(date: str, sent: float, now: float, max_skew: float, first_seen: float | None = None) -> str | None:
    """Why a signed request dated `sent` (the Date header `date`, read as UTC) is refused at `now`, or None.
    `first_seen`: when its signature was first seen (None: not looked up). Pure."""
    if zone_offset(sent, now, max_skew) is None:
        return (f"the Date header {date!r} is more than {max_skew:g} s away from the gateway's clock in every "
                "time zone (UTC-12:00 .. UTC+14:00): correct the client's clock")
    if first_seen is not None and now - first_seen > max_skew:
        return (f"replayed request: this signature was first seen {now - first_seen:.0f} s ago, and a signature "
                f"is accepted for {max_skew:g} s after its first use (sign each request anew)")
    return None


def zone_offset(sent: float, now: float, max_skew: float) -> float | None:
    """The time-zone offset (seconds east of UTC) whose local time at `now` is within `max_skew` of `sent`, or
    None when no real zone's is: the SDK writes local time and labels it GMT. Pure."""
    apparent = sent - now
    nearest = min(max(round(apparent / QUARTER_HOUR) * QUARTER_HOUR, WEST), EAST)
    return nearest if abs(apparent - nearest) <= max_skew else None


@lru_cache(maxsize=256)
def _seconds(date: str) -> float | None:
    """A Date header as a Unix time (the zone it names, GMT for the SDK, is taken at its word); None when
    unreadable. Cached: a busy client sends the same Date for a whole second."""
    try:
        return parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


class Replays:
    """When each verified signature was first seen, kept until its Date leaves the band (from then the band
    refuses it by itself), and at most `capacity` of them: when full, the entry that would leave the band
    soonest goes first. One per process (the gateway's, each model server's)."""

    __slots__ = ("max_skew", "capacity", "first", "leaving")

    def __init__(self, max_skew: float = DEFAULT_MAX_SKEW, capacity: int = DEFAULT_MEMORY):
        self.max_skew = max_skew
        self.capacity = max(int(capacity), 1)
        self.first: dict[bytes, float] = {}
        self.leaving: list[tuple[float, bytes]] = []  # heap of (when its Date leaves the band, signature)

    def __len__(self) -> int:
        return len(self.first)

    def first_seen(self, signature: bytes, sent: float, now: float) -> float:
        """When `signature` (dated `sent`) was first seen; `now` if this is the first time."""
        self._forget(now)
        seen = self.first.get(signature)
        if seen is not None:
            return seen
        if len(self.first) >= self.capacity:
            _, oldest = heapq.heappop(self.leaving)
            del self.first[oldest]
        self.first[signature] = now
        # Its Date leaves the band once now > sent - WEST + max_skew; from then the band refuses it by itself.
        heapq.heappush(self.leaving, (sent - WEST + self.max_skew, signature))
        return now

    def _forget(self, now: float) -> None:
        leaving = self.leaving
        while leaving and leaving[0][0] < now:
            del self.first[heapq.heappop(leaving)[1]]


def sign(token: str, body: bytes, content_type: str, date: str, service: str) -> str:
    """What the EAS SDK sends (used by tests and the bench; the gateway only verifies)."""
    message = f"POST\n{hashlib.md5(body).hexdigest()}\n{content_type}\n{date}\n/api/predict/{service}"  # noqa: S324
    digest = hmac.new(token.encode(), message.encode(), hashlib.sha1).digest()
    return "EAS " + base64.b64encode(digest).decode()
