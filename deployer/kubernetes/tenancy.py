"""What a tenant's service file may ask of a shared Kubernetes cluster, and what an admin's settings may allow.
Pure: the same rules refuse a service file at create/update (services.writes.catalog) and fail a render
(a version stored before a rule, or a cluster whose settings changed since), so neither path can be skipped.

- hostPath: only under a root the cluster's admin lists (`host_path_roots`); `..` is refused outright (the
  node's symlinks cannot be resolved from here), and the volume is typed File or Directory, so the kubelet
  refuses a socket or a device there. A location inside one of the file's own `storage` mounts is read from
  that volume, never from the node.
- Annotations: a service file's `features` become pod annotations only from ANNOTATION_PREFIXES /
  ANNOTATION_KEYS; anything else could turn off a sidecar, an AppArmor profile or assume a cloud role.
- Pod Security: the namespaces Ferry creates enforce the cluster's `pod_security` level (restricted unless
  an admin says otherwise); a volume kind that level refuses is refused here by name, before the apply.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from services.servicefile.asynchronous import is_async

from .llm import llm_problems

POD_SECURITY_LEVELS = ("restricted", "baseline", "privileged")
DEFAULT_POD_SECURITY = "restricted"
# Keys of `features` that reach pod annotations: Knative's autoscaling knobs (checked by Knative), scrape hints
# (they only tell Prometheus where to look), Ferry's own, and the one ECI hint Ferry documents.
ANNOTATION_PREFIXES = ("autoscaling.knative.dev/", "prometheus.io/", "ferry.dev/")
ANNOTATION_KEYS = frozenset({"k8s.aliyun.com/eci-image-cache"})
# Never a hostPath root, whatever an admin writes: the node's kernel, devices, runtime sockets, kubelet state
# (every pod's Secrets and tokens), its configuration and root's home.
FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev", "/run", "/var/run", "/var/lib/kubelet", "/var/lib/docker",
                   "/var/lib/containerd", "/etc", "/root", "/boot")
LOCATION_FIELDS = ("model_path", "processor_path", "warm_up_data_path")


def annotation_allowed(key: str) -> bool:
    return key in ANNOTATION_KEYS or any(key.startswith(prefix) and len(key) > len(prefix)
                                         for prefix in ANNOTATION_PREFIXES)


def allowed_annotations_text() -> str:
    return ", ".join([f"{prefix}*" for prefix in ANNOTATION_PREFIXES] + sorted(ANNOTATION_KEYS))


def feature_problems(features: dict | None) -> list[tuple[str, str]]:
    return [(f"features.{key}", "is not an annotation Ferry passes to pods on Kubernetes; allowed: "
                                f"{allowed_annotations_text()}")
            for key in sorted(features or {}) if not annotation_allowed(key)]


def local_path(url: str) -> str | None:
    """The node path a location names (a plain path or file://), or None for a URL that is fetched."""
    scheme = urlparse(url).scheme.lower()
    if scheme == "file":
        return unquote(urlparse(url).path)
    return url if scheme == "" else None


def storage_holding(doc: dict, path: str) -> str | None:
    """The `mount_path` of the file's own storage mount (NFS, OSS, ...) that holds `path`, or None. A location
    there is read from that volume in the container, not from the node: no hostPath, no host_path_roots."""
    if not path.startswith("/") or ".." in path.split("/"):
        return None
    clean = _normal(path)
    for storage in doc.get("storage") or []:
        mount = _normal(storage.get("mount_path") or "")
        if mount != "/" and mount.startswith("/") and (clean == mount or clean.startswith(mount + "/")):
            return mount
    return None


def host_path_problem(path: str, roots: tuple[str, ...]) -> str | None:
    """Why `path` may not become a hostPath with these admin `roots`, or None."""
    if not path.startswith("/"):
        return "a local path must be absolute (it names a path on the node)"
    parts = path.split("/")
    if ".." in parts or "." in parts:
        return "a local path may not contain '.' or '..' segments"
    if not roots:
        return ("names a path on the node, and this cluster allows no host paths (an administrator lists them "
                "in the cluster's setting host_path_roots); use an http(s), s3 or oss URL")
    clean = _normal(path)
    if not any(clean == root or clean.startswith(root.rstrip("/") + "/") for root in roots):
        return f"is outside the host paths this cluster allows ({', '.join(roots)})"
    return None


def host_path_roots_problem(roots: object) -> str | None:
    """Why an admin's `host_path_roots` cannot be stored, or None."""
    if not isinstance(roots, list) or not all(isinstance(root, str) for root in roots):
        return "must be a list of absolute paths"
    for root in roots:
        if not root.startswith("/") or ".." in root.split("/") or "." in root.split("/"):
            return f'"{root}" must be an absolute path without "." or ".." segments'
        clean = _normal(root)
        if clean == "/":
            return "the node's root directory cannot be a host path root"
        for forbidden in FORBIDDEN_ROOTS:
            if clean == forbidden or clean.startswith(forbidden + "/") or forbidden.startswith(clean + "/"):
                return f'"{root}" is, holds or lies inside {forbidden}, which pods never mount'
    return None


def pod_security_problem(level: object, roots: object) -> str | None:
    if level not in POD_SECURITY_LEVELS:
        return f"must be one of {', '.join(POD_SECURITY_LEVELS)}"
    if roots and level != "privileged":
        # Both the baseline and the restricted Pod Security Standards forbid hostPath volumes outright.
        return ("host_path_roots needs pod_security privileged: the baseline and restricted Pod Security levels "
                "refuse every hostPath volume")
    return None


def service_file_problems(doc: dict, *, host_path_roots: tuple[str, ...], pod_security: str,
                          knative: bool) -> list[tuple[str, str]]:
    """Every (field, message) that keeps `doc` from running on a cluster with these settings."""
    problems = []
    for field_name in LOCATION_FIELDS:
        path = local_path(doc[field_name]) if doc.get(field_name) else None
        if path is not None and not storage_holding(doc, path):
            problem = host_path_problem(path, host_path_roots)
            if problem:
                problems.append((field_name, problem))
    problems += feature_problems(doc.get("features"))
    problems += llm_problems(doc)  # what an engine needs: model_path, a GPU for sglang, its own flags
    if is_async(doc):
        problems.append(("metadata.type", 'asynchronous services ("Async") run on local clusters only for now: '
                                          "their queues are fed to the instances by the local gateway's "
                                          "dispatcher, and nothing exports the queue backlog to a Kubernetes "
                                          "cluster's autoscaler yet (docs/async.md)"))
    if pod_security == "restricted" and not knative:
        for index, storage in enumerate(doc.get("storage") or []):
            if "nfs" in storage:
                # Knative's NFS is the CSI driver's inline volume, which restricted allows.
                problems.append((f"storage[{index}].nfs", "NFS volumes are refused by the restricted Pod "
                                                          "Security level of this cluster (its setting "
                                                          "pod_security); use oss or ask for baseline"))
    return problems


def _normal(path: str) -> str:
    return str(PurePosixPath(path))


def cluster_settings_problems(settings: dict) -> list[tuple[str, str]]:
    """(setting, message) for the tenancy settings of a cluster, checked when an admin saves them."""
    problems = []
    roots = settings.get("host_path_roots") or []
    problem = host_path_roots_problem(roots)
    if problem:
        problems.append(("host_path_roots", problem))
    problem = pod_security_problem(settings.get("pod_security", DEFAULT_POD_SECURITY), roots)
    if problem:
        problems.append(("pod_security", problem))
    from .netpol import cluster_settings_problems as network_problems
    from .volumes import fetch_settings_problems

    return problems + network_problems(settings) + fetch_settings_problems(settings)
