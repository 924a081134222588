"""Health endpoints for probes: `GET /healthz` (liveness: the process answers) and `GET /readyz` (readiness:
the database answers too).

They are answered by a middleware placed first, before anything reads the Host header: a kubelet or a
container healthcheck calls the pod's IP, which is not in ALLOWED_HOSTS, and Django's host check would
answer 400. No session, no authentication, no template: a probe every few seconds must cost next to nothing.
"""

from django.db import DatabaseError, connection
from django.http import JsonResponse


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        # No error text in the answer or the log: a probe every 10 s would flood the log, and the
        # connection error can name hosts that the unauthenticated caller has no business knowing.
        return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


PROBES = {"/healthz": healthz, "/readyz": readyz}


class HealthCheckMiddleware:
    """Answers the probe paths itself; everything else goes on through the usual chain."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            return probe(request)
        return self.get_response(request)
