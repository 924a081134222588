"""EAS-style errors: a JSON body {"Code", "Message", "RequestId"} with the matching HTTP status."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from services.errors import FerryError, Forbidden, NotFound, Unauthorized
from services.servicefile import ServiceFileError

from .eas_operations import eas_operation


class NotImplementedOperation(FerryError):
    status = 501

    def __init__(self, operation: str, method: str, path: str):
        super().__init__(f"Ferry does not implement the EAS operation {operation} ({method} {path}); "
                         "docs/eas-operations.md lists the operations Ferry serves.", code="NotImplemented")


def _drf_errors_to_paths(detail, prefix: str = "") -> list[dict]:
    """Flattens DRF's nested validation errors into [{"Path", "Message"}]."""
    if isinstance(detail, dict):
        found = []
        for key, value in detail.items():
            path = key if not prefix else f"{prefix}.{key}"
            if key == "non_field_errors":
                path = prefix
            found.extend(_drf_errors_to_paths(value, path))
        return found
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return [{"Path": prefix, "Message": str(item)} for item in detail]
        found = []
        for index, item in enumerate(detail):
            found.extend(_drf_errors_to_paths(item, f"{prefix}[{index}]"))
        return found
    return [{"Path": prefix, "Message": str(detail)}]


def _summary(errors: list[dict]) -> str:
    return "; ".join(f"{e['Path']}: {e['Message']}" if e["Path"] else e["Message"] for e in errors)


def _as_ferry_error(exc) -> FerryError | None:
    if isinstance(exc, FerryError):
        return exc
    if isinstance(exc, ServiceFileError):
        errors = [{"Path": e.path, "Message": e.message} for e in exc.errors]
        return FerryError(_summary(errors), code="InvalidServiceConfig", errors=errors)
    if isinstance(exc, drf.ValidationError):
        errors = _drf_errors_to_paths(exc.detail)
        return FerryError(_summary(errors), code="InvalidParameter", errors=errors)
    if isinstance(exc, drf.ParseError):
        return FerryError(f"The request body is not valid JSON: {exc.detail}", code="InvalidBody")
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return Unauthorized(str(exc.detail), code="Unauthorized")
    if isinstance(exc, (drf.PermissionDenied, DjangoPermissionDenied)):
        return Forbidden(str(getattr(exc, "detail", exc)) or "You may not do this.")
    if isinstance(exc, (drf.NotFound, Http404)):
        return NotFound(str(getattr(exc, "detail", "")) or "Not found.")
    if isinstance(exc, drf.APIException):
        error = FerryError(str(exc.detail), code=type(exc).__name__)
        error.status = exc.status_code
        return error
    return None


def eas_exception_handler(exc, context):
    request = context.get("request")
    if isinstance(exc, drf.MethodNotAllowed) and request is not None:
        # A path Ferry serves, with a method that is another EAS operation there (e.g. a PUT it lacks): 501.
        operation = eas_operation(request.method, request.path)
        if operation:
            exc = NotImplementedOperation(operation, request.method, request.path)
    error = _as_ferry_error(exc)
    if error is None:
        return None  # a bug: let Django log it and answer 500 (fallbacks.server_error)
    body = {"Code": error.code, "Message": error.message, "RequestId": getattr(request, "request_id", "")}
    if error.errors:
        body["Errors"] = error.errors
    response = Response(body, status=error.status)
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="ferry"'
    return response
