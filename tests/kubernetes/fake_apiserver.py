"""FakeKubernetesApiServer: a stateful, in-memory stand-in for the Kubernetes API server, on loopback.

No cluster exists on these machines, so the driver's apply / observe / prune / delete logic talks, through
the real `kubernetes` client, to this fake over HTTP. It serves what Ferry uses: discovery, GET / LIST with
label and field selectors, server-side apply (field managers, conflicts, resourceVersion), create, replace,
DELETE with owner cascade, pod logs. It is not a cluster: nothing runs. `run_controllers()` plays the
Deployment and Knative controllers once (pods appear, become ready, conditions are set), and the test
methods below play the HPA, crashing pods and events. Faults (`fail`) make it answer 5xx / 409 / 422.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.kubernetes.fake_ssa import ApplyConflict, managed_fields, server_side_apply, update
from tests.kubernetes.fake_workloads import Controllers

# (apiVersion, plural, kind, namespaced)
CORE = [("v1", "namespaces", "Namespace", False), ("v1", "nodes", "Node", False), ("v1", "pods", "Pod", True),
        ("v1", "services", "Service", True), ("v1", "events", "Event", True), ("v1", "secrets", "Secret", True),
        ("v1", "configmaps", "ConfigMap", True), ("v1", "serviceaccounts", "ServiceAccount", True),
        ("apps/v1", "deployments", "Deployment", True), ("apps/v1", "replicasets", "ReplicaSet", True),
        ("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
        ("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", True)]
OPTIONAL = {
    "gateway-api": [("gateway.networking.k8s.io/v1", "httproutes", "HTTPRoute", True)],
    "istio": [("networking.istio.io/v1", "virtualservices", "VirtualService", True),
              ("networking.istio.io/v1", "destinationrules", "DestinationRule", True)],
    "knative": [("serving.knative.dev/v1", "services", "Service", True),
                ("serving.knative.dev/v1", "revisions", "Revision", True)],
}
_DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class FakeKubernetesApiServer:
    def __init__(self, *, installed=("gateway-api", "istio", "knative"), validator: Callable | None = None):
        self.resources = CORE + [r for name in installed for r in OPTIONAL[name]]
        self.validator = validator
        self.objects: dict[tuple, dict] = {}  # (apiVersion, plural, namespace, name) -> object
        self.owners: dict[tuple, dict] = {}  # same key -> {manager: set of field paths}
        self.logs: dict[tuple[str, str], list[str]] = {}  # (namespace, pod) -> lines
        self.requests: list[tuple[str, str]] = []  # (method, path) as received
        self.faults: list[dict] = []
        self.errors: list[str] = []  # exceptions while serving (a bug in the fake or the test): answered 500
        self.lock = threading.RLock()
        self._version = 0
        self.controllers = Controllers(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    # -- what tests do --------------------------------------------------------------------------------
    def fail(self, method: str, path_part: str = "", *, status: int = 500, times: int = 1,
             field: str = "", message: str = "injected fault") -> None:
        """The next `times` requests whose method and path match answer `status`."""
        self.faults.append({"method": method.upper(), "path": path_part, "status": status, "times": times,
                            "field": field, "message": message})

    def run_controllers(self, **options) -> None:
        self.controllers.run(**options)

    def find(self, kind: str, name: str | None = None, namespace: str | None = None, api_version: str | None = None):
        with self.lock:
            return [copy.deepcopy(o) for (av, _, ns, n), o in sorted(self.objects.items())
                    if o["kind"] == kind and (name is None or n == name) and (namespace is None or ns == namespace)
                    and (api_version is None or av == api_version)]

    def put_object(self, obj: dict, manager: str = "test") -> dict:
        """Creates or replaces an object directly (what a controller or a person would have made)."""
        with self.lock:
            key = self._key_of(obj)
            stored = self._stamp(copy.deepcopy(obj), self.objects.get(key))
            self.objects[key] = stored
            self.owners.setdefault(key, {})
            return stored

    def update_fields(self, api_version: str, kind: str, name: str, namespace: str, changes: dict,
                      manager: str) -> dict:
        """A write by another field manager (e.g. the HPA setting spec.replicas)."""
        with self.lock:
            key = self._key(api_version, kind, namespace, name)
            current = self.objects[key]
            result, self.owners[key] = update(current, changes, self.owners.get(key, {}), manager)
            self.objects[key] = self._stamp(result, current)
            return self.objects[key]

    def delete_object(self, key: tuple) -> None:
        with self.lock:
            obj = self.objects.pop(key, None)
            self.owners.pop(key, None)
            if obj is None:
                return
            uid = obj["metadata"]["uid"]
            for other_key, other in list(self.objects.items()):  # owner cascade (background propagation)
                if any(ref.get("uid") == uid for ref in other["metadata"].get("ownerReferences", [])):
                    self.delete_object(other_key)

    # -- storage ----------------------------------------------------------------------------------------
    def _plural(self, api_version: str, kind: str) -> str:
        return next(p for av, p, k, _ in self.resources if av == api_version and k == kind)

    def _key(self, api_version: str, kind: str, namespace: str | None, name: str) -> tuple:
        return api_version, self._plural(api_version, kind), namespace or "", name

    def _key_of(self, obj: dict) -> tuple:
        meta = obj["metadata"]
        return self._key(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])

    def _stamp(self, obj: dict, before: dict | None) -> dict:
        """resourceVersion on every change, generation on every spec change, uid and time once."""
        meta = obj.setdefault("metadata", {})
        if before is None:
            meta["uid"] = f"uid-{self._next_version()}"
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
        else:
            for key in ("uid", "creationTimestamp"):
                meta[key] = before["metadata"][key]
            meta["generation"] = before["metadata"].get("generation", 1) + (obj.get("spec") != before.get("spec"))
            if _without_version(obj) == _without_version(before):
                meta["resourceVersion"] = before["metadata"]["resourceVersion"]
                return obj
        meta["resourceVersion"] = str(self._next_version())
        return obj

    def _next_version(self) -> int:
        self._version += 1
        return self._version

    # -- requests ---------------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers, body: bytes) -> tuple[int, object, str]:
        parsed = urlparse(raw_path)
        path, query = parsed.path.rstrip("/"), {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        with self.lock:
            self.requests.append((method, path))
            fault = self._fault(method, path)
            if fault:
                return _status(fault["status"], fault["message"], field=fault["field"])
            discovery = self._discovery(path)
            if discovery is not None:
                return 200, discovery, "application/json"
            route = self._route(path)
            if route is None:
                return _status(404, f"the server could not find the requested resource ({path})")
            return self._serve(method, route, query, headers, body)

    def _fault(self, method: str, path: str) -> dict | None:
        for fault in self.faults:
            if fault["times"] > 0 and fault["method"] == method and fault["path"] in path:
                fault["times"] -= 1
                return fault
        return None

    def _discovery(self, path: str):
        if path == "/version":
            return {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake", "gitCommit": "0" * 40,
                    "gitTreeState": "clean", "buildDate": "2024-04-17T00:00:00Z", "goVersion": "go1.22.2",
                    "compiler": "gc", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups = sorted({av for av, *_ in self.resources if "/" in av})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": av.split("/")[0], "versions": [{"groupVersion": av, "version": av.split("/")[1]}],
                 "preferredVersion": {"groupVersion": av, "version": av.split("/")[1]}} for av in groups]}
        for api_version in {av for av, *_ in self.resources}:
            prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            if path == prefix:
                resources = []
                for av, plural, kind, namespaced in self.resources:
                    if av == api_version:
                        verbs = ["get", "list", "create", "update", "patch", "delete"]
                        resources.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced,
                                          "kind": kind, "verbs": verbs})
                        if plural == "pods":
                            resources.append({"name": "pods/log", "singularName": "", "namespaced": True,
                                              "kind": "Pod", "verbs": ["get"]})
                return {"kind": "APIResourceList", "groupVersion": api_version, "resources": resources}
        return None

    def _route(self, path: str):
        match = re.match(r"^/(?:api/(v1)|apis/([^/]+/[^/]+))(?:/namespaces/([^/]+))?/([^/]+)(?:/([^/]+))?(?:/(log))?$",
                         path)
        if not match:
            return None
        api_version = match.group(1) or match.group(2)
        namespace, plural, name, sub = match.group(3), match.group(4), match.group(5), match.group(6)
        resource = next((r for r in self.resources if r[0] == api_version and r[1] == plural), None)
        if resource is None or (namespace and not resource[3]):
            return None
        return {"api_version": api_version, "plural": plural, "kind": resource[2], "namespace": namespace or "",
                "name": name, "sub": sub}

    def _serve(self, method: str, route: dict, query: dict, headers, body: bytes):
        key = (route["api_version"], route["plural"], route["namespace"], route["name"])
        if route["sub"] == "log":
            if key not in self.objects:
                return _status(404, f'pods "{route["name"]}" not found')
            return 200, "".join(line + "\n" for line in self.logs.get((route["namespace"], route["name"]), [])), \
                "text/plain"
        if method == "GET" and not route["name"]:
            return 200, self._list(route, query), "application/json"
        if method == "GET":
            obj = self.objects.get(key)
            if obj is None:
                return _status(404, f'{route["plural"]} "{route["name"]}" not found')
            return 200, obj, "application/json"
        if method == "DELETE":
            if key not in self.objects:
                return _status(404, f'{route["plural"]} "{route["name"]}" not found')
            self.delete_object(key)
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}, "application/json"
        document = json.loads(body or b"{}")
        if method == "PATCH" and "apply-patch" in headers.get("Content-Type", ""):
            return self._apply(key, route, document, query)
        if method in ("POST", "PUT"):
            return self._write(method, key, route, document)
        return _status(405, f"{method} is not supported by the fake")

    def _list(self, route: dict, query: dict) -> dict:
        labels, fields = _selector(query.get("labelSelector", "")), query.get("fieldSelector", "")
        items = [copy.deepcopy(o) for (av, plural, ns, _), o in sorted(self.objects.items())
                 if av == route["api_version"] and plural == route["plural"]
                 and (not route["namespace"] or ns == route["namespace"])
                 and labels(o["metadata"].get("labels") or {}) and _fields_match(o, fields)]
        return {"kind": f'{route["kind"]}List', "apiVersion": route["api_version"],
                "metadata": {"resourceVersion": str(self._version)}, "items": items}

    def _invalid(self, document: dict):
        name = (document.get("metadata") or {}).get("name", "")
        if not name or not _DNS.match(name) or len(name) > 253:
            return _status(422, f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain',
                           field="metadata.name", kind=document.get("kind", ""), name=name)
        if self.validator:
            try:
                self.validator(document)
            except AssertionError as error:
                field = str(error).split(": ")[1] if str(error).count(": ") >= 2 else ""
                return _status(422, str(error), field=field, kind=document.get("kind", ""), name=name)
        return None

    def _apply(self, key: tuple, route: dict, document: dict, query: dict):
        if not query.get("fieldManager"):
            return _status(422, "PATCH with apply-patch requires fieldManager", field="fieldManager")
        invalid = self._invalid(document)
        if invalid:
            return invalid
        current = self.objects.get(key)
        wanted_version = (document.get("metadata") or {}).get("resourceVersion")
        if wanted_version and (current is None or current["metadata"]["resourceVersion"] != wanted_version):
            return _status(409, "the object has been modified; please apply your changes to the latest version")
        config = copy.deepcopy(document)
        config.setdefault("metadata", {})["namespace"] = route["namespace"] or None
        if not route["namespace"]:
            config["metadata"].pop("namespace")
        try:
            result, owners = server_side_apply(current, config, self.owners.get(key, {}), query["fieldManager"],
                                               query.get("force") in ("true", "True", "1"))
        except ApplyConflict as conflict:
            return _status(409, str(conflict))
        result.setdefault("metadata", {})["name"] = route["name"]
        if route["namespace"]:
            result["metadata"]["namespace"] = route["namespace"]
        self.owners[key] = owners
        stored = self._stamp(result, current)
        stored["metadata"]["managedFields"] = managed_fields(owners, route["api_version"])
        self.objects[key] = stored
        return (201 if current is None else 200), stored, "application/json"

    def _write(self, method: str, key: tuple, route: dict, document: dict):
        invalid = self._invalid(document)
        if invalid:
            return invalid
        name = document["metadata"]["name"]
        key = (route["api_version"], route["plural"], route["namespace"], name)
        current = self.objects.get(key)
        if method == "POST" and current is not None:
            return _status(409, f'{route["plural"]} "{name}" already exists', reason="AlreadyExists")
        if method == "PUT":
            if current is None:
                return _status(404, f'{route["plural"]} "{name}" not found')
            wanted = document["metadata"].get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                return _status(409, "the object has been modified; please apply your changes to the latest version")
        if route["namespace"]:
            document["metadata"]["namespace"] = route["namespace"]
        self.objects[key] = self._stamp(document, current)
        return (201 if current is None else 200), self.objects[key], "application/json"


def _handler(fake: FakeKubernetesApiServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # Headers and body go out in two writes: without this, Nagle and delayed ACKs cost 40 ms each.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                status, payload, content_type = fake.handle(self.command, self.path, self.headers, body)
            except Exception as exc:  # noqa: BLE001 -- reported by the fixture, answered like a server would
                fake.errors.append(f"{self.command} {self.path}: {exc!r}")
                status, payload, content_type = _status(500, f"the fake failed: {exc!r}")
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, *args):  # quiet: pytest shows failures, not every request
            pass

    return Handler


def _status(code: int, message: str, *, field: str = "", kind: str = "", name: str = "", reason: str = ""):
    reasons = {404: "NotFound", 409: "Conflict", 422: "Invalid", 500: "InternalError", 503: "ServiceUnavailable",
               429: "TooManyRequests", 405: "MethodNotAllowed"}
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason or reasons.get(code, "Unknown"), "code": code}
    if code == 422:
        body["details"] = {"name": name, "kind": kind,
                           "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]}
    return code, body, "application/json"


def _selector(text: str):
    """An equality- and set-based label selector as a predicate."""
    tests = []
    for part in re.split(r",(?![^()]*\))", text) if text else []:
        part = part.strip()
        if m := re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", part):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            tests.append(lambda labels, k=key, o=op, v=values: (labels.get(k) in v) == (o == "in"))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in part:
            key, value = re.split(r"==?", part, maxsplit=1)
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif part.startswith("!"):
            tests.append(lambda labels, k=part[1:]: k not in labels)
        else:
            tests.append(lambda labels, k=part: k in labels)
    return lambda labels: all(test(labels) for test in tests)


def _fields_match(obj: dict, text: str) -> bool:
    for part in filter(None, text.split(",")):
        path, value = part.split("=", 1)
        node = obj
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if str(node) != value:
            return False
    return True


def _without_version(obj: dict) -> dict:
    result = copy.deepcopy(obj)
    for key in ("resourceVersion", "managedFields", "generation"):
        result["metadata"].pop(key, None)
    return result


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
