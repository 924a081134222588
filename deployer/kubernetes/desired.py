"""The plain data the renderers take: what one service should look like on one Kubernetes cluster.

Everything here is a frozen dataclass of plain values, so rendering is a pure function of it and golden tests
need neither Django nor a cluster. `build.py` makes these from a Service row and a rollout plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FLAVORS = ("raw", "knative")
TRAFFIC_APIS = ("gateway-api", "istio")


@dataclass(frozen=True)
class GatewayRef:
    """The Gateway (Gateway API) or Istio gateway ("namespace/name") that exposes services outside the cluster."""

    name: str
    namespace: str = ""


@dataclass(frozen=True)
class MetricSpec:
    """How an EAS scaling metric reaches the HPA: a Pods or External metric served by prometheus-adapter."""

    type: str  # "Pods" | "External"
    name: str
    # External metrics are selected by labels; the renderer adds ferry.dev/service and ferry.dev/version.
    selector: dict[str, str] = field(default_factory=dict)
    # The HPA target value is threshold * scale (GPU utilization: the seeds' adapter divides by 100).
    scale: float = 1.0


DEFAULT_METRICS = {
    # Requests per second per instance, from the gateway or mesh metrics (see docs/kubernetes.md for the rule).
    "qps": MetricSpec("External", "ferry_service_qps"),
    # The seeds' prometheus-adapter rule over dcgm-exporter's DCGM_FI_DEV_GPU_UTIL (0..1 per pod).
    "gpu[util]": MetricSpec("Pods", "container_gpu_usage", scale=0.01),
    "queue[backlog]": MetricSpec("External", "ferry_service_queue_backlog"),
    # Requests in flight per instance: the KPA's concurrency, for services scaled by `autoscaler.kpa`.
    "concurrency": MetricSpec("External", "ferry_service_concurrency"),
    # Requests waiting in an LLM engine's own queue, per pod: vllm:num_requests_waiting or sglang:num_queue_reqs
    # from the engines' /metrics, under one name a prometheus-adapter rule gives them (docs/kubernetes.md).
    "llm[waiting]": MetricSpec("Pods", "engine_requests_waiting"),
}


@dataclass(frozen=True)
class ClusterSettings:
    """Per-cluster choices (Cluster.flavor, Cluster.traffic_api and Cluster.settings JSON)."""

    flavor: str = "raw"
    traffic_api: str = "gateway-api"
    gateway: GatewayRef | None = None
    domain: str = ""  # external host names are <service>.<namespace>.<domain> when set
    prometheus_url: str = ""
    runtime_image: str = ""  # overrides the Ferry runtime image (built-in processors and the model fetcher)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict, ...] = ()
    pod_annotations: dict[str, str] = field(default_factory=dict)
    pod_labels: dict[str, str] = field(default_factory=dict)
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str = ""
    model_cache_pvc: str = ""  # a PVC (e.g. a Fluid dataset's) shared by pods as the model cache
    drain_seconds: int = 5  # preStop: the endpoints controller and proxies stop routing before SIGTERM
    metrics: dict[str, MetricSpec] = field(default_factory=lambda: dict(DEFAULT_METRICS))
    host_path_roots: tuple[str, ...] = ()  # node paths an admin lets services mount read-only (tenancy.py)
    pod_security: str = "restricted"  # the Pod Security level the namespaces Ferry creates enforce
    # Who may reach a service's pods (netpol.py): the data plane's namespaces, Ferry's own, Prometheus's.
    ingress_namespaces: tuple[str, ...] = ("knative-serving", "istio-system")
    ferry_namespace: str = "ferry-system"
    monitoring_namespaces: tuple[str, ...] = ("monitoring",)
    # What the init container's model fetch may reach and take (processors/fetch_policy.py): non-public
    # networks it may reach, the most bytes and seconds of one fetch (None: no limit).
    fetch_allowed_networks: tuple[str, ...] = ()
    fetch_max_bytes: int | None = None
    fetch_timeout_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.flavor not in FLAVORS:
            raise ValueError(f'flavor must be one of {", ".join(FLAVORS)}, not "{self.flavor}"')
        if self.traffic_api not in TRAFFIC_APIS:
            raise ValueError(f'traffic_api must be one of {", ".join(TRAFFIC_APIS)}, not "{self.traffic_api}"')


@dataclass(frozen=True)
class VersionDesired:
    number: int
    weight: int  # percent of traffic
    replicas: int  # wanted instances (raw without an HPA; Knative's initial scale)
    service_file: dict  # the version's normalized service file (what shapes its pods)


@dataclass(frozen=True)
class MirrorDesired:
    targets: tuple[str, ...]  # EAS service names; "namespace/name" when in another project's namespace
    ratio: int  # percent of requests copied


@dataclass(frozen=True)
class ServiceDesired:
    name: str  # EAS service name (underscores allowed); dns_name() of it names the objects
    namespace: str
    versions: tuple[VersionDesired, ...]
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    running: bool = True
    autoscaler: dict | None = None  # the service file's EAS autoscaler section
    mirror: MirrorDesired | None = None
    labels: dict[str, str] = field(default_factory=dict)  # the service's own labels
    group: str = ""
    project: str = ""
    restart_token: str = ""  # changes on a restart request: raw Deployments roll their pods

    def version(self, number: int) -> VersionDesired:
        return next(v for v in self.versions if v.number == number)

    @property
    def newest(self) -> VersionDesired:
        return max(self.versions, key=lambda v: v.number)
