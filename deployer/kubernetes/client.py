"""A thin layer over the official `kubernetes` client: the handful of calls Ferry makes, with API errors
turned into the driver contract's TransientError / PermanentError and transient ones retried.

- 422 Invalid: PermanentError naming the field the API server rejected (retrying sends the same object).
- 409 Conflict, 429, 5xx, timeouts, refused connections: retried here a few times, then TransientError
  (the reconcile task retries with capped exponential backoff).
- 401 / 403: PermanentError: credentials or RBAC must change first (docs/kubernetes.md lists the rules).
- A kind the cluster does not serve (Knative or Istio not installed): PermanentError saying what to install.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

import urllib3
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from deployer.drivers.base import PermanentError, TransientError

from .meta import FIELD_MANAGER

logger = logging.getLogger("ferry.kubernetes")
RETRIED_STATUSES = {409, 429, 500, 502, 503, 504}
INSTALL_HINTS = {
    "serving.knative.dev": "install Knative Serving, or set the cluster's flavor to raw",
    "networking.istio.io": "install Istio, or set the cluster's traffic API to gateway-api",
    "gateway.networking.k8s.io": "install the Gateway API CRDs (standard channel), or set the traffic API to istio",
}


class KubeApi:
    """What Ferry does to one cluster. `sleep` is injectable so tests of retries take no time."""

    def __init__(self, api_client: k8s.ApiClient, *, attempts: int = 3, backoff: float = 0.2,
                 sleep: Callable[[float], None] = time.sleep, discovery_cache: str | None = None):
        self.api_client = api_client
        self.attempts, self.backoff, self.sleep = attempts, backoff, sleep
        self._discovery_cache = discovery_cache
        self._dynamic: DynamicClient | None = None

    # -- reads ------------------------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        def call():
            try:
                return self._resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        return self._retrying(call, f"read {kind} {name}")

    def list(self, api_version: str, kind: str, namespace: str | None = None, *, label_selector: str = "",
             field_selector: str | None = None) -> list[dict]:
        def call():
            result = self._resource(api_version, kind).get(namespace=namespace, label_selector=label_selector or None,
                                                           field_selector=field_selector)
            return [item for item in result.to_dict().get("items", [])]
        return self._retrying(call, f"list {kind}")

    def served(self, api_version: str, kind: str) -> bool:
        try:
            self._resource(api_version, kind)
            return True
        except PermanentError:
            return False

    def version(self) -> dict:
        return self._retrying(lambda: k8s.VersionApi(self.api_client).get_code().to_dict(), "read the version")

    def pod_logs(self, namespace: str, pod: str, *, container: str | None = None, since_seconds: int | None = None,
                 follow: bool = False, tail_lines: int | None = None) -> Iterator[str]:
        core = k8s.CoreV1Api(self.api_client)

        def call():
            return core.read_namespaced_pod_log(pod, namespace, container=container, follow=follow,
                                                since_seconds=since_seconds, tail_lines=tail_lines,
                                                _preload_content=False)
        response = self._retrying(call, f"read the log of {pod}")
        buffered = b""
        try:
            for chunk in response.stream(4096):
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
            if buffered:
                yield buffered.decode(errors="replace")
        finally:
            response.release_conn()

    # -- writes -----------------------------------------------------------------------------------------
    def apply(self, manifest: dict) -> dict:
        """Server-side apply as field manager `ferry`, taking over fields others changed (force): Ferry's
        desired state wins, fields it leaves out (an HPA's replicas) stay with their owners."""
        meta = manifest["metadata"]

        def call():
            resource = self._resource(manifest["apiVersion"], manifest["kind"])
            return resource.server_side_apply(body=manifest, name=meta["name"], namespace=meta.get("namespace"),
                                              field_manager=FIELD_MANAGER, force_conflicts=True).to_dict()
        return self._retrying(call, f'apply {manifest["kind"]} {meta["name"]}', manifest=manifest)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """True when it was there. Dependents (ReplicaSets, pods, revisions) go in the background."""
        def call():
            try:
                self._resource(api_version, kind).delete(name=name, namespace=namespace,
                                                         propagation_policy="Background")
                return True
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
        return self._retrying(call, f"delete {kind} {name}")

    # -- plumbing ---------------------------------------------------------------------------------------
    def _resource(self, api_version: str, kind: str):
        if self._dynamic is None:
            self._dynamic = self._retrying(lambda: DynamicClient(self.api_client, cache_file=self._discovery_cache),
                                           "discover the API")
        try:
            return self._dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            group = api_version.split("/")[0] if "/" in api_version else ""
            hint = INSTALL_HINTS.get(group, "")
            raise PermanentError("MissingApi", f"the cluster does not serve {api_version} {kind}"
                                               + (f": {hint}" if hint else "")) from None

    def _retrying(self, call, what: str, *, manifest: dict | None = None):
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                error = api_error(exc, what, manifest)
                if isinstance(error, PermanentError) or attempt == self.attempts:
                    raise error from exc
                logger.info("Could not %s (attempt %s of %s): %s; retrying", what, attempt, self.attempts, error)
                self.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")


def api_error(exc: Exception, what: str, manifest: dict | None = None) -> Exception:
    """The driver-contract error for an exception from the client."""
    if not isinstance(exc, ApiException):
        return TransientError(f"could not {what}: the API server is unreachable ({exc})")
    status, body = exc.status, _status_body(exc)
    message = body.get("message") or exc.reason or ""
    if status == 422:
        causes = (body.get("details") or {}).get("causes") or []
        fields = ", ".join(dict.fromkeys(c.get("field", "") for c in causes if c.get("field"))) or "the object"
        subject = f'{manifest["kind"]} {manifest["metadata"]["name"]}' if manifest else what
        return PermanentError("InvalidManifest", f"the API server rejected {fields} of {subject}: {message}")
    if status in (401, 403):
        return PermanentError("ClusterForbidden", f"could not {what}: {message} (check the cluster's credentials "
                                                  "and Ferry's RBAC rules)")
    if status in RETRIED_STATUSES or status >= 500 or status == 0:
        return TransientError(f"could not {what}: {status} {message}")
    return PermanentError("ClusterRejected", f"could not {what}: {status} {message}")


def _status_body(exc: ApiException) -> dict:
    try:
        body = exc.body.decode() if isinstance(exc.body, bytes) else exc.body
        return json.loads(body or "{}")
    except (ValueError, TypeError):
        return {}
