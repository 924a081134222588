"""Errors raised outside the API's views, answered in EAS's shape for API paths.

DRF's exception handler (errors.py) covers what a view raises. What happens before or around a view — no
route for the path, a body over the size limit, a host or request Django refuses, a bug — goes through
Django's error handlers instead, which answer HTML pages. EAS's SDK parses every answer as JSON and shows
its users a parse error for HTML, so under /api/ these answer {"Code", "Message", "RequestId"}; the console
keeps Django's pages.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views import defaults

from .eas_operations import eas_operation
from .errors import NotImplementedOperation

API_PREFIX = "/api/"


def is_api_request(request) -> bool:
    return request.path.startswith(API_PREFIX)


def eas_error_response(request, status: int, code: str, message: str) -> JsonResponse:
    request_id = getattr(request, "request_id", "")
    response = JsonResponse({"Code": code, "Message": message, "RequestId": request_id}, status=status)
    if request_id:
        response["x-acs-request-id"] = request_id
    return response


def too_large_response(request) -> JsonResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return eas_error_response(request, 413, "RequestEntityTooLarge",
                              f"The request body is larger than {limit} bytes, the largest this server accepts "
                              "(FERRY_MAX_REQUEST_BODY_BYTES).")


def not_found(request, exception=None):
    if not is_api_request(request):
        return defaults.page_not_found(request, exception)
    operation = eas_operation(request.method, request.path)
    if operation:
        error = NotImplementedOperation(operation, request.method, request.path)
        return eas_error_response(request, error.status, error.code, error.message)
    return eas_error_response(request, 404, "NotFound",
                              f"There is no operation at {request.method} {request.path}.")


def bad_request(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        if is_api_request(request):
            return too_large_response(request)
        return defaults.bad_request(request, exception)  # pragma: no cover - the console posts small forms
    if not is_api_request(request):
        return defaults.bad_request(request, exception)
    return eas_error_response(request, 400, "BadRequest", f"The request was refused: {exception or 'bad request'}.")


def permission_denied(request, exception=None):
    if not is_api_request(request):
        return defaults.permission_denied(request, exception)
    return eas_error_response(request, 403, "Forbidden", str(exception or "") or "You may not do this.")


def server_error(request):
    if not is_api_request(request):
        return defaults.server_error(request)
    return eas_error_response(request, 500, "InternalError",
                              "The server failed to handle this request; its log has the details "
                              f"(RequestId {getattr(request, 'request_id', '')}).")


class BodySizeLimitMiddleware:
    """Refuses an API body over the limit before anything reads it: DRF's parsers read the stream directly,
    past Django's own check of DATA_UPLOAD_MAX_MEMORY_SIZE (which only guards request.body)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_api_request(request) and _declared_length(request) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return too_large_response(request)
        return self.get_response(request)


def _declared_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0
