import uuid


class RequestIdMiddleware:
    """Gives every request an id (EAS's RequestId), echoed in error bodies and the x-acs-request-id header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = str(uuid.uuid4()).upper()
        response = self.get_response(request)
        response["x-acs-request-id"] = request.request_id
        return response
