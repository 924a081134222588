"""Domain errors. The API turns them into EAS error bodies; the console shows them beside the fields."""


class FerryError(Exception):
    status = 400
    code = "InvalidParameter"

    def __init__(self, message: str, *, code: str | None = None, errors: list[dict] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.errors = errors or []  # [{"Path": "metadata.resource", "Message": "..."}]


class InvalidRequest(FerryError):
    status = 400
    code = "InvalidParameter"

    @classmethod
    def at(cls, path: str, message: str, *, code: str | None = None) -> "InvalidRequest":
        return cls(f"{path}: {message}", code=code, errors=[{"Path": path, "Message": message}])


class Unauthorized(FerryError):
    status = 401
    code = "Unauthorized"


class Forbidden(FerryError):
    status = 403
    code = "Forbidden"


class NotFound(FerryError):
    status = 404
    code = "NotFound"


class AlreadyExists(FerryError):
    status = 409
    code = "AlreadyExists"


class Conflict(FerryError):
    """The request is valid but the object is not in a state that allows it (e.g. no rollout to promote)."""

    status = 409
    code = "Conflict"
