"""HTTP to Ferry's REST API: authentication, EAS error bodies turned into ApiError, service lookup."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

import requests

from . import __version__
from .config import Settings
from .signing import acs3_headers, canonical_query

API = "/api/v2"
TIMEOUT = 60.0


@dataclass
class ApiError(Exception):
    """The server said no ({"Code", "Message", "RequestId", "Errors"}), or could not be reached."""

    code: str
    message: str
    status: int = 0
    errors: list[dict] = field(default_factory=list)
    request_id: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class Response:
    body: dict
    status: int
    server_time: str = ""  # the Date header as EAS's time format, to ask for events "since this write"


class Client:
    def __init__(self, settings: Settings, *, debug: bool = False):
        self.settings = settings
        self.debug = debug
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"ferry-cli/{__version__}"
        self.first_server_time: datetime | None = None  # the server's clock at this invocation's first answer

    # -- plumbing ------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, query: dict | None = None, body: object = None) -> Response:
        """`path` below /api/v2 (segments already quoted with `segment()`); query values None are left out."""
        self.settings.require_credentials()
        query = {key: str(value) for key, value in (query or {}).items() if value is not None and value != ""}
        data = b"" if body is None else json.dumps(body).encode()
        content_type = "application/json" if body is not None else ""
        full_path = API + path
        url = self.settings.endpoint + full_path + (f"?{canonical_query(query)}" if query else "")
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        else:
            host = urlsplit(self.settings.endpoint).netloc
            headers.update(acs3_headers(method=method, host=host, path=full_path, query=query, body=data,
                                        content_type=content_type, access_key_id=self.settings.access_key_id,
                                        access_key_secret=self.settings.access_key_secret))
        if self.debug:
            print(f"> {method} {url}", file=sys.stderr)
        try:
            answer = self.session.request(method, url, data=data or None, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise ApiError("ConnectionFailed", f"Cannot reach Ferry at {self.settings.endpoint}: {_reason(exc)}. "
                           "Check the endpoint (`ferry config show`) and that the server is running.") from None
        if self.debug:
            print(f"< {answer.status_code} {answer.headers.get('x-acs-request-id', '')}", file=sys.stderr)
        parsed = _json_or_none(answer)
        if answer.status_code >= 400:
            raise _error_from(answer, parsed)
        if not isinstance(parsed, dict):
            raise ApiError("UnexpectedAnswer", f"{method} {full_path} answered {answer.status_code} without a JSON "
                           f"object: {answer.text[:200]!r}. Is {self.settings.endpoint} a Ferry server?",
                           status=answer.status_code)
        return Response(parsed, answer.status_code, self._events_since(answer.headers.get("Date", "")))

    def _events_since(self, http_date: str) -> str:
        """Events "since this write", by the server's clock: from this invocation's first answer, and at least
        2 s before this one (the Date header is written after the request, and has whole seconds)."""
        try:
            now = parsedate_to_datetime(http_date)
        except (TypeError, ValueError):
            return ""
        self.first_server_time = self.first_server_time or now
        return min(self.first_server_time, now - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def get(self, path: str, **query) -> dict:
        return self.request("GET", path, query=query).body

    def post(self, path: str, body: object = None, **query) -> Response:
        return self.request("POST", path, query=query, body=body)

    def put(self, path: str, body: object = None, **query) -> Response:
        return self.request("PUT", path, query=query, body=body)

    def delete(self, path: str, **query) -> Response:
        return self.request("DELETE", path, query=query)

    # -- services ------------------------------------------------------------------------------------------

    def service_path(self, ref: ServiceRef, suffix: str = "") -> str:
        return f"/services/{segment(ref.cluster)}/{segment(ref.name)}{suffix}"

    def resolve(self, name: str) -> ServiceRef:
        """NAME or CLUSTER/NAME; without a cluster (flag, FERRY_CLUSTER, profile) it is looked up by name."""
        cluster, _, service = name.rpartition("/")
        if not service:
            raise ApiError("InvalidServiceName", f"{name!r} names no service.")
        cluster = cluster or self.settings.cluster
        if cluster:
            return ServiceRef(cluster, service)
        found = self.get("/services", ServiceName=service, PageSize=100).get("Services", [])
        clusters = sorted({item.get("Region", "") for item in found})
        if not clusters:
            raise ApiError("ServiceNotFound", f"You have no service named {service}.", status=404)
        if len(clusters) > 1:
            raise ApiError("AmbiguousServiceName", f"Services named {service} exist in clusters "
                           f"{', '.join(clusters)}: say which with CLUSTER/{service} or --cluster.")
        return ServiceRef(clusters[0], service)

    def describe(self, ref: ServiceRef) -> dict:
        return self.get(self.service_path(ref))


@dataclass(frozen=True)
class ServiceRef:
    cluster: str
    name: str

    def __str__(self) -> str:
        return self.name


def segment(value: str) -> str:
    return quote(value, safe="~")


def _json_or_none(answer: requests.Response):
    try:
        return answer.json()
    except ValueError:
        return None


def _error_from(answer: requests.Response, parsed) -> ApiError:
    if isinstance(parsed, dict) and ("Code" in parsed or "Message" in parsed):
        errors = [e for e in parsed.get("Errors") or [] if isinstance(e, dict)]
        return ApiError(str(parsed.get("Code") or f"HTTP{answer.status_code}"), str(parsed.get("Message", "")),
                        answer.status_code, errors, str(parsed.get("RequestId", "")))
    text = " ".join(answer.text.split())[:300] or answer.reason
    return ApiError(f"HTTP{answer.status_code}", f"{answer.request.method} {urlsplit(answer.url).path}: {text}",
                    answer.status_code)


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or host unknown"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT:g} s"
    return type(exc).__name__


