"""Where a pod's model and files come from: volumes, mounts and the init container that fetches URLs. Pure.

- `model_path` (and `processor_path`, `warm_up_data_path`, `storage[].oss`) given as a URL (http(s), s3, oss)
  is fetched before the server starts by an init container running Ferry's fetcher
  (`python -m deployer.kubernetes.fetchmodel`) into an emptyDir; with the cluster setting `model_cache_pvc`
  the fetcher keeps its content-addressed cache on that PVC, so a model is downloaded once per cluster
  rather than once per pod (the seeds' "load in seconds", e.g. a Fluid dataset's PVC).
- A local path or file:// names a path on the node: a read-only hostPath, only under a root the cluster's
  admin lists (`host_path_roots`, see tenancy.py) and typed File or Directory (never a socket or device);
  a path inside one of the file's own `storage` mounts is read from that volume instead (`model_dir`).
- `storage[].nfs` is an NFS volume (Knative allows no `nfs` volume: there it is the NFS CSI driver's inline
  volume); `storage[].empty_dir` and `metadata.shm_size` are emptyDirs (medium Memory for /dev/shm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from processors.registry import FERRY_RUNTIME_IMAGE, KUBERNETES_MODEL_DIR

from .desired import ClusterSettings
from .tenancy import host_path_problem, local_path, storage_holding

PROCESSOR_DIR = "/mnt/processor"
WARMUP_DIR = "/mnt/warmup"
CACHE_DIR = "/mnt/model-cache"
FETCH_SECRET = "ferry-model-credentials"  # optional Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
NFS_CSI_DRIVER = "nfs.csi.k8s.io"
REMOTE_SCHEMES = ("http", "https", "s3", "oss")


class RenderError(ValueError):
    """The service file cannot be expressed on Kubernetes; `path` names its field."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass
class Mounts:
    """What the volumes of one pod add up to; filled by `pod_mounts`."""

    volumes: list[dict] = field(default_factory=list)
    mounts: list[dict] = field(default_factory=list)  # of the serving container
    fetches: list[tuple[str, str]] = field(default_factory=list)  # (url, directory in the fetcher)
    fetch_mounts: list[dict] = field(default_factory=list)  # of the fetcher
    s3_endpoint: str = ""


def pod_mounts(service_file: dict, cluster: ClusterSettings, *, knative: bool) -> Mounts:
    result = Mounts(s3_endpoint=_endpoint(service_file.get("oss_endpoint", "")))
    for field_name, volume, directory in (("model_path", "model", KUBERNETES_MODEL_DIR),
                                         ("processor_path", "processor", PROCESSOR_DIR),
                                         ("warm_up_data_path", "warmup", WARMUP_DIR)):
        url = service_file.get(field_name)
        if url and not _in_storage(service_file, url):
            _location(result, field_name, url, volume, directory, cluster.host_path_roots)
    for index, storage in enumerate(service_file.get("storage") or []):
        _storage(result, index, storage, knative=knative)
    shm = (service_file.get("metadata") or {}).get("shm_size")
    if shm and not any(m["mountPath"] == "/dev/shm" for m in result.mounts):
        _add(result, {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm}Gi"}}, "/dev/shm")
    if result.fetches:
        cache = ({"persistentVolumeClaim": {"claimName": cluster.model_cache_pvc}} if cluster.model_cache_pvc
                 else {"emptyDir": {}})
        result.volumes.append({"name": "model-cache", **cache})
        result.fetch_mounts.append({"name": "model-cache", "mountPath": CACHE_DIR})
    return result


def model_dir(service_file: dict, *, as_given: bool = False) -> str:
    """Where the server finds the model in its container: /mnt/models (fetched, or the node's path mounted
    there), or the path itself when it lies inside one of the file's storage mounts. A file there is named by
    its directory, as a fetched file is, unless `as_given` (an engine may take a file, e.g. a GGUF model)."""
    path = _in_storage(service_file, service_file.get("model_path") or "")
    if not path:
        return KUBERNETES_MODEL_DIR
    if as_given or path.endswith("/") or PurePosixPath(path).suffix == "":
        return path.rstrip("/") or "/"
    return str(PurePosixPath(path).parent)


def _in_storage(service_file: dict, url: str) -> str | None:
    """The local path `url` names when one of the file's storage mounts holds it (read from that volume)."""
    path = local_path(url) if url else None
    return path if path and storage_holding(service_file, path) else None


def fetch_container(mounts: Mounts, cluster: ClusterSettings) -> dict | None:
    """The init container that fetches every URL, or None when nothing is remote."""
    if not mounts.fetches:
        return None
    args = ["--cache", CACHE_DIR, *fetch_policy_args(cluster)]
    if mounts.s3_endpoint:
        args += ["--s3-endpoint", mounts.s3_endpoint]
    for url, directory in mounts.fetches:
        args += ["--fetch", url, directory]
    return {
        "name": "fetch-model",
        "image": cluster.runtime_image or FERRY_RUNTIME_IMAGE,
        "command": ["python", "-m", "deployer.kubernetes.fetchmodel"],
        "args": args,
        "envFrom": [{"secretRef": {"name": FETCH_SECRET, "optional": True}}],
        "volumeMounts": mounts.fetch_mounts,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }


def fetch_policy_args(cluster: ClusterSettings) -> list[str]:
    """The fetch policy the fetcher applies in the pod (fetchmodel.py), as the control plane applies it to its
    own fetches: non-public networks it may reach, the most bytes and seconds one fetch may take. Local paths
    never reach the fetcher (they are hostPath volumes, above), and it refuses any it is given."""
    args = []
    for network in cluster.fetch_allowed_networks:
        args += ["--allow-network", network]
    if cluster.fetch_max_bytes is not None:
        args += ["--max-bytes", str(cluster.fetch_max_bytes)]
    if cluster.fetch_timeout_seconds is not None:
        args += ["--timeout-seconds", f"{cluster.fetch_timeout_seconds:g}"]
    return args


def fetch_settings_problems(settings: dict) -> list[tuple[str, str]]:
    """(setting, message) for a cluster's fetch limits, checked when an admin saves them."""
    import ipaddress

    problems = []
    networks = settings.get("fetch_allowed_networks")
    if networks is not None:
        if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks):
            problems.append(("fetch_allowed_networks", "must be a list of CIDR networks"))
        else:
            for network in networks:
                try:
                    ipaddress.ip_network(network, strict=False)
                except ValueError:
                    problems.append(("fetch_allowed_networks", f'"{network}" is not a CIDR network'))
                    break
    for key in ("fetch_max_bytes", "fetch_timeout_seconds"):
        value = settings.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
                                  or (key == "fetch_max_bytes" and not isinstance(value, int))):
            problems.append((key, "must be a positive number" + (" of bytes" if key == "fetch_max_bytes"
                                                                 else " of seconds")))
    return problems


def file_name(url: str) -> str:
    """The name a fetched URL keeps in its directory (the fetcher stores a file under its own name)."""
    return PurePosixPath(unquote(urlparse(url).path) or url).name


def _location(result: Mounts, field_name: str, url: str, volume: str, directory: str,
              host_path_roots: tuple[str, ...]) -> None:
    scheme = urlparse(url).scheme.lower()
    if scheme in REMOTE_SCHEMES:
        _add(result, {"name": volume, "emptyDir": {}}, directory, read_only=True)
        result.fetch_mounts.append({"name": volume, "mountPath": directory})
        result.fetches.append((url, directory))
    elif scheme in ("", "file"):
        path = local_path(url)
        problem = host_path_problem(path, host_path_roots)
        if problem:
            raise RenderError(field_name, problem)
        # A file is mounted under its own name, so the server finds it in the directory as when fetched.
        is_file = not path.endswith("/") and PurePosixPath(path).suffix != ""
        mount_path = f"{directory}/{PurePosixPath(path).name}" if is_file else directory
        # The type makes the kubelet check what is there: a socket, a device or a missing path is refused.
        host_path = {"path": path.rstrip("/") or "/", "type": "File" if is_file else "Directory"}
        _add(result, {"name": volume, "hostPath": host_path}, mount_path, read_only=True)
    else:
        raise RenderError(field_name, f'scheme "{scheme}://" cannot be fetched on Kubernetes')


def _storage(result: Mounts, index: int, storage: dict, *, knative: bool) -> None:
    name, path = f"storage-{index}", storage["mount_path"]
    if "nfs" in storage:
        nfs = storage["nfs"]
        read_only = bool(nfs.get("readOnly"))
        if knative:
            volume = {"csi": {"driver": NFS_CSI_DRIVER, "readOnly": read_only,
                              "volumeAttributes": {"server": nfs["server"], "share": nfs["path"] or "/"}}}
        else:
            volume = {"nfs": {"server": nfs["server"], "path": nfs["path"] or "/", "readOnly": read_only}}
        _add(result, {"name": name, **volume}, path, read_only=read_only)
    elif "empty_dir" in storage:
        spec = storage["empty_dir"]
        empty_dir = {"medium": "Memory"} if spec.get("medium") == "memory" else {}
        if spec.get("size_limit"):
            empty_dir["sizeLimit"] = f"{spec['size_limit']}Gi"
        _add(result, {"name": name, "emptyDir": empty_dir}, path)
    elif "oss" in storage:
        oss = storage["oss"]
        _add(result, {"name": name, "emptyDir": {}}, path, read_only=bool(oss.get("readOnly")))
        fetch_dir = f"/mnt/{name}"
        result.fetch_mounts.append({"name": name, "mountPath": fetch_dir})
        result.fetches.append((oss["path"], fetch_dir))
        result.s3_endpoint = result.s3_endpoint or _endpoint(oss.get("endpoint", ""))
    else:
        kinds = sorted(set(storage) - {"mount_path", "properties"}) or ["(none)"]
        raise RenderError(f"storage[{index}]", f'mounts of kind {", ".join(kinds)} are not supported on '
                                               "Kubernetes yet; use nfs, oss or empty_dir")


def _add(result: Mounts, volume: dict, mount_path: str, *, read_only: bool = False) -> None:
    result.volumes.append(volume)
    mount = {"name": volume["name"], "mountPath": mount_path}
    if read_only:
        mount["readOnly"] = True
    result.mounts.append(mount)


def _endpoint(endpoint: str) -> str:
    """EAS writes OSS endpoints as bare host names; the S3 client wants a URL."""
    if not endpoint:
        return ""
    return endpoint if "://" in endpoint else f"https://{endpoint}"
