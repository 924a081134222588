"""The pod of one version: container (image, args, ports, env, resources, probes), volumes, annotations,
scheduling. Pure; shared by the raw Deployment and the Knative revision template, which differ only where
Knative forbids a field (one port, no lifecycle hooks, no grace period, probe ports implied, no pod-level
securityContext).

Every pod meets the restricted Pod Security Standard (non-root, no privilege escalation, no capabilities,
RuntimeDefault seccomp), mounts no service-account token, and only the containers of Ferry's runtime image
get a read-only root filesystem (a /tmp emptyDir beside it): other servers write into their image. Built-in
processors receive the service token from the Secret `token.py` renders (env valueFrom, never a value in the
manifest) and refuse calls without it.
"""

from __future__ import annotations

import math

from processors.registry import (
    BUILTIN_PROCESSORS,
    BUILTIN_READY_TIMEOUT_SECONDS,
    DEFAULT_GRACE_PERIOD_SECONDS,
    EXTERNAL_READY_TIMEOUT_SECONDS,
    FERRY_RUNTIME_IMAGE,
    KUBERNETES_MODEL_DIR,
    PROCESSORS,
    ProcessorUnavailable,
    batching_args,
    kubernetes_image,
)

from . import llm
from .desired import ServiceDesired, VersionDesired
from .meta import is_annotation_key, version_labels
from .tenancy import annotation_allowed, service_file_problems
from .token import TOKEN_ENV, token_env
from .volumes import (
    PROCESSOR_DIR,
    WARMUP_DIR,
    Mounts,
    RenderError,
    fetch_container,
    file_name,
    model_dir,
    pod_mounts,
)

CONTAINER = "server"
DEFAULT_CUSTOM_PORT = 8000
KNATIVE_AUTOSCALING = "autoscaling.knative.dev/"
# ECI burst (seeds 000): schedule on Elastic Container Instances when the cluster's nodes are full.
ECI_BURST = "alibabacloud.com/burst-resource"
ECI_SPECS = "k8s.aliyun.com/eci-use-specs"
RESTARTED_AT = "ferry.dev/restarted-at"
# A uid no image's files belong to by chance, for images that would run as root (restricted forbids it).
# Ferry's runtime image has its own user, 10001 (platform/Dockerfile).
RUNTIME_UID = 10001
DEFAULT_UID = 65532
TMP_VOLUME = "tmp"


def processor_of(service_file: dict) -> str:
    return service_file.get("processor") or "custom"


def serving_port(service_file: dict) -> int:
    processor = processor_of(service_file)
    if processor == "custom":
        return (service_file.get("containers") or [{}])[0].get("port") or DEFAULT_CUSTOM_PORT
    return PROCESSORS[processor].port


def metrics_endpoint(service_file: dict) -> tuple[int, str] | None:
    """(port, path) Prometheus scrapes, or None when the processor exposes no metrics."""
    processor = processor_of(service_file)
    info = PROCESSORS.get(processor)
    if info is None or not info.metrics_path:
        return None
    return info.metrics_port or serving_port(service_file), info.metrics_path


def container(desired: ServiceDesired, version: VersionDesired, mounts, *, knative: bool) -> dict:
    doc = version.service_file
    image, command, args = _image_and_args(desired, doc)
    port = serving_port(doc)
    spec: dict = {"name": CONTAINER, "image": image}
    if command:
        spec["command"] = command
    if args:
        spec["args"] = args
    spec["ports"] = _ports(doc, port, knative=knative)
    # A user's env cannot shadow the token the server checks; it overrides an engine's defaults by name.
    defaults = llm.engine_env(processor_of(doc), doc) if llm.is_llm(doc) else {}
    given = {item["name"]: item["value"] for item in _user_container(doc).get("env", []) if item["name"] != TOKEN_ENV}
    env = [{"name": name, "value": value} for name, value in {**defaults, **given}.items()]
    if processor_of(doc) in BUILTIN_PROCESSORS:
        env.append(token_env(desired))
    if env:
        spec["env"] = env
    spec["resources"] = resources(doc.get("metadata") or {})
    read_only_root = _runs_ferry_runtime(desired, image)
    volume_mounts = list(mounts.mounts)
    if read_only_root:
        volume_mounts.append({"name": TMP_VOLUME, "mountPath": "/tmp"})
    if volume_mounts:
        spec["volumeMounts"] = volume_mounts
    spec["securityContext"] = container_security(read_only_root=read_only_root,
                                                 uid=RUNTIME_UID if read_only_root else DEFAULT_UID)
    spec.update(probes(desired, doc, knative=knative))
    if not knative:
        drain = desired.cluster.drain_seconds
        # Endpoints and proxies drop a terminating pod asynchronously: keep serving a moment before SIGTERM.
        spec["lifecycle"] = {"preStop": {"exec": {"command": ["sh", "-c", f"sleep {drain}"]}}}
    return spec


def pod_spec(desired: ServiceDesired, version: VersionDesired, *, knative: bool) -> dict:
    doc = checked_file(desired, version, knative=knative)
    cluster = desired.cluster
    mounts = pod_mounts(doc, desired.cluster, knative=knative)
    if llm.is_llm(doc):
        _engine_volumes(mounts, doc)
    server = container(desired, version, mounts, knative=knative)
    spec: dict = {"automountServiceAccountToken": False, "containers": [server]}
    if not knative:  # Knative accepts a pod-level securityContext only behind a feature flag
        spec["securityContext"] = {"runAsNonRoot": True, "fsGroup": RUNTIME_UID,
                                   "seccompProfile": {"type": "RuntimeDefault"}}
    init = fetch_container(mounts, desired.cluster)
    volumes = list(mounts.volumes)
    if init:
        init["securityContext"] = container_security(read_only_root=True, uid=RUNTIME_UID)
        init["volumeMounts"] = [*init["volumeMounts"], {"name": TMP_VOLUME, "mountPath": "/tmp"}]
        spec["initContainers"] = [init]
    if init or server["securityContext"]["readOnlyRootFilesystem"]:
        volumes.append({"name": TMP_VOLUME, "emptyDir": {}})
    if volumes:
        spec["volumes"] = volumes
    if not knative:
        grace = llm.grace_seconds(doc) if llm.is_llm(doc) else grace_period(doc)
        spec["terminationGracePeriodSeconds"] = grace + desired.cluster.drain_seconds
    spec.update(cluster_pod_fields(cluster))
    spread = _spread(doc, desired, version)
    if spread:
        spec["topologySpreadConstraints"] = spread
    return spec


def _engine_volumes(mounts: Mounts, doc: dict) -> None:
    """An engine's writable home, and /dev/shm when neither shm_size nor a storage mount gave one."""
    extra = [llm.home_volume()]
    if not any(mount["mountPath"] == "/dev/shm" for mount in mounts.mounts):
        extra.append(llm.shm_volume(doc))
    for volume, mount in extra:
        mounts.volumes.append(volume)
        mounts.mounts.append(mount)


def pod_annotations(desired: ServiceDesired, version: VersionDesired, *, knative: bool) -> dict[str, str]:
    """Scrape hints (seeds 003), ECI burst (seeds 000), the file's annotation-like `features`, the cluster's."""
    doc = version.service_file
    annotations = dict(desired.cluster.pod_annotations)
    metrics = metrics_endpoint(doc)
    if metrics:
        annotations.update({"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics[0]),
                            "prometheus.io/path": metrics[1]})
    metadata = doc.get("metadata") or {}
    if metadata.get("resource_burstable"):
        annotations[ECI_BURST] = "eci"
        spec = _instance_type(doc)
        if spec:
            annotations[ECI_SPECS] = spec
    for key, value in (doc.get("features") or {}).items():
        # Only allowed keys (pod_spec refuses the others by name); Knative's are the revision's (knative.py).
        if annotation_allowed(key) and is_annotation_key(key) and not key.startswith(KNATIVE_AUTOSCALING):
            annotations[key] = str(value)
    if desired.restart_token and not knative:
        annotations[RESTARTED_AT] = desired.restart_token
    return annotations


def container_security(*, read_only_root: bool, uid: int) -> dict:
    """The restricted Pod Security Standard, on the container (where Knative accepts it too)."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": False,
            "readOnlyRootFilesystem": read_only_root, "runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _runs_ferry_runtime(desired: ServiceDesired, image: str) -> bool:
    """Ferry's model server writes nothing outside /tmp; other images are not known to."""
    return image in (FERRY_RUNTIME_IMAGE, desired.cluster.runtime_image or FERRY_RUNTIME_IMAGE)


def resources(metadata: dict) -> dict:
    """EAS sizes -> requests and limits. cpu in cores, memory in MB (Mi), gpu whole cards, gpu_memory in GB
    of a shared card (ACK cGPU `aliyun.com/gpu-mem`, seeds 001), disk in GB of ephemeral storage."""
    sizes: dict[str, str] = {}
    if metadata.get("cpu"):
        sizes["cpu"] = cpu_quantity(metadata["cpu"])
    if metadata.get("memory"):
        sizes["memory"] = f"{metadata['memory']}Mi"
    if metadata.get("disk"):
        disk = str(metadata["disk"])
        sizes["ephemeral-storage"] = disk.replace("G", "Gi").replace("Gii", "Gi") if not disk.isdigit() else f"{disk}Gi"
    devices: dict[str, str] = {}
    if metadata.get("gpu"):
        devices["nvidia.com/gpu"] = str(metadata["gpu"])
    if metadata.get("gpu_memory"):
        devices["aliyun.com/gpu-mem"] = str(metadata["gpu_memory"])
    if metadata.get("gpu_core_percentage"):
        devices["aliyun.com/gpu-core.percentage"] = str(metadata["gpu_core_percentage"])
    limits = {**sizes, **devices}
    if metadata.get("qos") == "BestEffort":
        limits.pop("cpu", None)  # shares spare CPU: requested, not capped
    result = {}
    if sizes:
        result["requests"] = sizes
    if limits:
        result["limits"] = limits  # extended resources (GPUs) may appear in limits only
    return result


def cpu_quantity(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{round(float(cores) * 1000)}m"


def grace_period(doc: dict) -> int:
    eas = (doc.get("metadata") or {}).get("eas") or {}
    return int(eas.get("termination_grace_period", DEFAULT_GRACE_PERIOD_SECONDS))


def probes(desired: ServiceDesired, doc: dict, *, knative: bool) -> dict:
    user = _user_container(doc)
    given = {key: user[check] for key, check in (("readinessProbe", "readiness_check"),
                                                 ("livenessProbe", "liveness_check"),
                                                 ("startupProbe", "startup_check")) if user.get(check)}
    port = serving_port(doc)
    if given:
        return {key: _probe_from_eas(check, port, knative=knative) for key, check in given.items()}
    processor = processor_of(doc)
    if processor == "custom":
        # An arbitrary image: an open port is the only readiness signal we can assume.
        return {"readinessProbe": {"tcpSocket": _port_ref(port, knative), "periodSeconds": 5}}
    path = PROCESSORS[processor].health_path.replace("{service}", desired.name)
    def check() -> dict:  # a fresh dict per probe: the manifests are data others may change
        return {"httpGet": {"path": path, **_port_ref(port, knative)}}

    if llm.is_llm(doc):
        return llm.probes(check)
    timeout = BUILTIN_READY_TIMEOUT_SECONDS if processor in BUILTIN_PROCESSORS else EXTERNAL_READY_TIMEOUT_SECONDS
    return {
        "readinessProbe": {**check(), "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**check(), "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 5},
        # Large models load slowly: the startup probe holds liveness off for the processor's load timeout.
        "startupProbe": {**check(), "periodSeconds": 5, "failureThreshold": math.ceil(timeout / 5)},
    }


def _probe_from_eas(check: dict, port: int, *, knative: bool) -> dict:
    probe: dict = {}
    if "http_get" in check:
        http = check["http_get"]
        probe["httpGet"] = {"path": http.get("path") or "/", **_port_ref(http.get("port") or port, knative, port)}
        if http.get("scheme"):
            probe["httpGet"]["scheme"] = http["scheme"]
    elif "tcp_socket" in check:
        probe["tcpSocket"] = _port_ref(check["tcp_socket"].get("port") or port, knative, port)
    elif "exec" in check:
        probe["exec"] = {"command": list(check["exec"]["command"])}
    for eas_key, key in (("initial_delay_seconds", "initialDelaySeconds"), ("period_seconds", "periodSeconds"),
                         ("timeout_seconds", "timeoutSeconds"), ("success_threshold", "successThreshold"),
                         ("failure_threshold", "failureThreshold")):
        if eas_key in check:
            probe[key] = check[eas_key]
    return probe


def _port_ref(port: int, knative: bool, serving: int | None = None) -> dict:
    """Knative probes the serving port itself and rejects naming it; raw pods use the named port."""
    if knative and port == (serving or port):
        return {}
    return {"port": "http" if port == (serving or port) else port}


def _ports(doc: dict, port: int, *, knative: bool) -> list[dict]:
    if knative:
        return [{"name": "http1", "containerPort": port, "protocol": "TCP"}]  # Knative allows exactly one
    ports = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    metrics = metrics_endpoint(doc)
    if metrics and metrics[0] != port:
        ports.append({"name": "metrics", "containerPort": metrics[0], "protocol": "TCP"})
    return ports


def _image_and_args(desired: ServiceDesired, doc: dict) -> tuple[str, list[str], list[str]]:
    processor = processor_of(doc)
    try:
        image, args = kubernetes_image(processor, doc)
    except ProcessorUnavailable as exc:
        raise RenderError("processor", exc.message) from None
    if processor == "custom":
        return _custom_command(doc)
    if image == FERRY_RUNTIME_IMAGE and desired.cluster.runtime_image:
        image = desired.cluster.runtime_image
    engine = llm.is_llm(doc)
    where = model_dir(doc, as_given=engine)
    args = [arg.replace("{service}", desired.name).replace("{model_dir}", where) for arg in args]
    params = list(doc.get("processor_params") or [])
    if engine:
        # The engine's program named (not its image's entrypoint), then Ferry's args, then the file's.
        command = list(PROCESSORS[processor].command)
        return llm.engine_image(processor, doc), command, args + llm.engine_args(processor, doc) + params
    if processor == "triton" and any(p.startswith("--model-repository") for p in params):
        args = [a for a in args if not a.startswith("--model-repository")]  # the file names its own repository
    if processor in BUILTIN_PROCESSORS:
        args += _builtin_args(doc)
    return image, [], args + params


def _builtin_args(doc: dict) -> list[str]:
    """The same options the node agent passes locally (processors.registry._builtin_argv)."""
    args = ["--grace-period", str(grace_period(doc))]
    if doc.get("model_entry"):
        args += ["--model-entry", doc["model_entry"]]
    if processor_of(doc) == "python":
        entry = doc.get("processor_entry")
        if not entry:
            raise RenderError("processor_entry", "the python processor needs the file of your handler module")
        args += ["--handler", f"{PROCESSOR_DIR if doc.get('processor_path') else KUBERNETES_MODEL_DIR}/{entry}"]
    if doc.get("warm_up_data_path"):
        args += ["--warmup-file", f"{WARMUP_DIR}/{file_name(doc['warm_up_data_path'])}"]
    threads = (doc.get("metadata") or {}).get("rpc", {}).get("worker_threads")
    if threads:
        args += ["--worker-threads", str(threads)]
    return args + batching_args(doc)  # the image runs Ferry's own server, which batches as it does locally


def _custom_command(doc: dict) -> tuple[str, list[str], list[str]]:
    user = _user_container(doc)
    if not user.get("image"):
        raise RenderError("containers[0].image", "a custom processor needs an image on Kubernetes")
    if user.get("script"):
        return user["image"], ["sh", "-c", user["script"]], []
    command = user.get("command")
    if isinstance(command, str):
        return user["image"], ["sh", "-c", command, "sh"], list(user.get("args", []))
    return user["image"], list(command or []), list(user.get("args", []))


def _user_container(doc: dict) -> dict:
    return (doc.get("containers") or [{}])[0]


def _instance_type(doc: dict) -> str:
    computing = (doc.get("cloud") or {}).get("computing") or {}
    types = [i["type"] for i in computing.get("instances") or []]
    return ",".join(types) or computing.get("instance_type", "")


def _spread(doc: dict, desired: ServiceDesired, version: VersionDesired) -> list[dict]:
    policy = (((doc.get("metadata") or {}).get("scheduling") or {}).get("spread") or {}).get("policy")
    keys = {"host": "kubernetes.io/hostname", "zone": "topology.kubernetes.io/zone"}
    if policy not in keys:
        return []
    return [{"maxSkew": 1, "topologyKey": keys[policy], "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": version_labels(desired, version.number)}}]


def cluster_pod_fields(cluster) -> dict:
    """What the cluster's settings put in every pod spec: node selector, tolerations, pull secrets, service
    account (each only when set)."""
    fields: dict = {}
    if cluster.node_selector:
        fields["nodeSelector"] = dict(cluster.node_selector)
    if cluster.tolerations:
        fields["tolerations"] = [dict(t) for t in cluster.tolerations]
    if cluster.image_pull_secrets:
        fields["imagePullSecrets"] = [{"name": name} for name in cluster.image_pull_secrets]
    if cluster.service_account:
        fields["serviceAccountName"] = cluster.service_account
    return fields


def checked_file(desired: ServiceDesired, version: VersionDesired, *, knative: bool) -> dict:
    """The version's service file, once the cluster's rules (tenancy.py) found nothing to refuse in it."""
    cluster = desired.cluster
    problems = service_file_problems(version.service_file, host_path_roots=cluster.host_path_roots,
                                     pod_security=cluster.pod_security, knative=knative)
    if problems:
        raise RenderError(*problems[0])
    return version.service_file
