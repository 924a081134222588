"""LLM engines (vllm, sglang) on Kubernetes: image and command, the model where the args name it, GPUs, shared
memory, probes that outlast a long load, timeouts that outlast a long stream, and what is refused by name. Every
object rendered here is also checked against the real schemas; the end-to-end tests go through Ferry's API and
reconciler into the fake API server."""

import pytest

from deployer.kubernetes import llm
from deployer.kubernetes.render import render
from deployer.kubernetes.tenancy import service_file_problems
from deployer.kubernetes.volumes import RenderError
from deployer.reconcile import reconcile
from services.models import ClusterGrant, Project, Service
from services.servicefile import validate_service_file
from services.writes.clusters import cluster_register
from tests.api.conftest import api_client_for, make_member
from tests.kubernetes.helpers import by_kind, desired_for
from tests.kubernetes.schemas import validate
from tests.kubernetes.test_driver import kubeconfig

CHAT = {"name": "chat", "processor": "vllm", "model_path": "oss://models-bucket/llm/tiny/",
        "processor_params": ["--max-model-len=512"], "metadata": {"instance": 1, "cpu": 2, "memory": 6000}}


def _doc(**changes) -> dict:
    metadata = changes.pop("metadata", {})
    return validate_service_file({**CHAT, **changes, "metadata": {**CHAT["metadata"], **metadata}})


def _render(doc, flavor="raw", **extra):
    manifests = render(desired_for(doc, flavor=flavor, **extra))
    for manifest in manifests:
        validate(manifest)
    return manifests


def _pod(doc, flavor="raw", **extra) -> dict:
    manifests = _render(doc, flavor, **extra)
    if flavor == "knative":
        return by_kind(manifests, "Service")["spec"]["template"]["spec"]
    return by_kind(manifests, "Deployment")["spec"]["template"]["spec"]


def _server(doc, flavor="raw") -> dict:
    return _pod(doc, flavor)["containers"][0]


def _env(container) -> dict:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def _volume_at(pod, path) -> dict:
    name = next(m["name"] for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == path)
    return next(v for v in pod["volumes"] if v["name"] == name)


# --- image, command, model ---

def test_vllm_runs_vllm_serve_on_the_fetched_model_under_the_service_name_then_the_files_params():
    server = _server(_doc())
    assert server["command"] == ["vllm", "serve"]
    assert server["args"] == ["/mnt/models", "--served-model-name=chat", "--host=0.0.0.0", "--port=8000",
                              "--max-model-len=512"]
    assert server["ports"][0]["containerPort"] == 8000


def test_sglang_runs_its_launch_server_with_metrics_on():
    server = _server(_doc(processor="sglang", metadata={"gpu": 1}))
    assert server["image"].startswith("lmsysorg/sglang:")
    assert server["command"] == ["python3", "-m", "sglang.launch_server"]
    assert server["args"][:5] == ["--model-path=/mnt/models", "--served-model-name=chat", "--host=0.0.0.0",
                                  "--port=30000", "--enable-metrics"]


def test_without_a_gpu_vllm_runs_its_cpu_image_and_keeps_its_kv_cache_within_the_memory_limit():
    server = _server(_doc(metadata={"memory": 16384}))
    assert "cpu" in server["image"] and server["image"] != _server(_doc(metadata={"gpu": 1}))["image"]
    assert _env(server)["VLLM_CPU_KVCACHE_SPACE"] == "4"  # a quarter of 16 GiB
    assert "nvidia.com/gpu" not in server["resources"]["limits"]


def test_the_model_is_fetched_by_the_init_container_into_the_path_the_args_name():
    pod = _pod(_doc())
    fetch = pod["initContainers"][0]["args"]
    assert fetch[fetch.index("--fetch") + 1:fetch.index("--fetch") + 3] == ["oss://models-bucket/llm/tiny/",
                                                                            "/mnt/models"]
    assert _volume_at(pod, "/mnt/models") == {"name": "model", "emptyDir": {}}


def test_a_model_inside_the_files_storage_mount_is_read_from_that_volume_not_from_the_node():
    storage = [{"nfs": {"server": "10.0.0.8", "path": "/exports"}, "mount_path": "/models"}]
    doc = _doc(model_path="/models/qwen", storage=storage)
    assert service_file_problems(doc, host_path_roots=(), pod_security="baseline", knative=False) == []
    pod = _pod(doc)
    assert pod["containers"][0]["args"][0] == "/models/qwen"
    assert not any("hostPath" in volume for volume in pod["volumes"])
    assert _volume_at(pod, "/models")["nfs"]["server"] == "10.0.0.8"


def test_a_model_on_the_node_is_a_read_only_host_path_at_the_path_the_args_name():
    pod = _pod(_doc(model_path="/srv/models/qwen/"))
    assert pod["containers"][0]["args"][0] == "/mnt/models"
    assert _volume_at(pod, "/mnt/models")["hostPath"] == {"path": "/srv/models/qwen", "type": "Directory"}


# --- GPUs and shared memory ---

def test_gpus_become_nvidia_gpu_limits_and_the_engine_spreads_over_all_of_them():
    server = _server(_doc(metadata={"gpu": 4, "memory": 64000}))
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert "nvidia.com/gpu" not in server["resources"]["requests"]  # extended resources: limits only
    assert server["image"] == "vllm/vllm-openai:v0.11.0"
    assert server["args"][-2:] == ["--tensor-parallel-size=4", "--max-model-len=512"]


def test_tensor_parallelism_the_file_sets_is_kept():
    params = ["--tensor-parallel-size", "2"]
    server = _server(_doc(metadata={"gpu": 4}, processor_params=params))
    assert server["args"][-2:] == params and "--tensor-parallel-size=4" not in server["args"]


def test_a_shared_gpu_uses_the_gpu_image_without_whole_cards():
    server = _server(_doc(metadata={"gpu_memory": 12}))
    assert server["resources"]["limits"]["aliyun.com/gpu-mem"] == "12"
    assert server["image"] == "vllm/vllm-openai:v0.11.0" and "VLLM_CPU_KVCACHE_SPACE" not in _env(server)


@pytest.mark.parametrize("flavor", ["raw", "knative"])
def test_shared_memory_is_a_memory_emptydir_of_the_files_shm_size(flavor):
    pod = _pod(_doc(metadata={"shm_size": 8, "memory": 64000}), flavor)
    assert _volume_at(pod, "/dev/shm")["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}


@pytest.mark.parametrize(("memory", "size"), [(6000, "2Gi"), (3000, "1500Mi")])
def test_without_shm_size_shared_memory_is_2_gib_or_half_a_small_memory_limit(memory, size):
    pod = _pod(_doc(metadata={"memory": memory}))
    assert _volume_at(pod, "/dev/shm")["emptyDir"] == {"medium": "Memory", "sizeLimit": size}


def test_the_engine_writes_its_caches_into_its_own_home_as_an_unprivileged_user():
    pod = _pod(_doc())
    server = pod["containers"][0]
    assert _volume_at(pod, llm.ENGINE_HOME) == {"name": "engine-home", "emptyDir": {}}
    assert _env(server)["HOME"] == llm.ENGINE_HOME and _env(server)["HF_HUB_OFFLINE"] == "1"
    assert server["securityContext"]["runAsNonRoot"] and server["securityContext"]["runAsUser"] != 0


def test_the_files_env_overrides_the_engines_defaults_by_name():
    containers = [{"image": "unused", "env": [{"name": "HF_HUB_OFFLINE", "value": "0"}]}]
    env = _env(_server({**_doc(), "containers": containers}))
    assert env["HF_HUB_OFFLINE"] == "0" and env["HOME"] == llm.ENGINE_HOME


# --- probes ---

@pytest.mark.parametrize("flavor", ["raw", "knative"])
def test_a_startup_probe_on_health_allows_a_30_minute_load_before_liveness_counts(flavor):
    server = _server(_doc(), flavor)
    startup = server["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
    for probe in ("readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["path"] == "/health"
    # Once started, a stalled engine is restarted within about a minute, not half an hour.
    liveness = server["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] <= 120
    if flavor == "raw":
        assert startup["httpGet"]["port"] == "http"


def test_probes_the_file_gives_replace_the_engines():
    check = {"http_get": {"path": "/v1/models"}, "period_seconds": 30, "failure_threshold": 100}
    containers = [{"image": "unused", "startup_check": check}]
    server = _server({**_doc(), "containers": containers})
    assert server["startupProbe"] == {"httpGet": {"path": "/v1/models", "port": "http"}, "periodSeconds": 30,
                                      "failureThreshold": 100}


# --- time: streams and long starts ---

def test_on_knative_a_stream_may_last_ten_minutes_and_a_long_load_does_not_fail_the_revision():
    service = by_kind(_render(_doc(), "knative"), "Service")
    spec = service["spec"]["template"]["spec"]
    assert (spec["timeoutSeconds"], spec["responseStartTimeoutSeconds"], spec["idleTimeoutSeconds"]) == (600,) * 3
    assert "containerConcurrency" not in spec  # the engine batches: no hard per-pod limit
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    assert annotations[llm.KNATIVE_PROGRESS_DEADLINE] == "3600s"


def test_rpc_keepalive_sets_how_long_a_stream_may_last_everywhere():
    doc = _doc(metadata={"rpc": {"keepalive": 300000}})
    spec = by_kind(_render(doc, "knative"), "Service")["spec"]["template"]["spec"]
    assert spec["timeoutSeconds"] == spec["idleTimeoutSeconds"] == 300
    route = by_kind(_render(doc), "HTTPRoute")
    assert {rule["timeouts"]["request"] for rule in route["spec"]["rules"]} == {"300s"}


@pytest.mark.parametrize("traffic_api", ["gateway-api", "istio"])
def test_raw_routes_let_a_stream_outlast_the_eas_default_of_five_seconds(traffic_api):
    manifests = _render(_doc(), traffic_api=traffic_api)
    if traffic_api == "istio":
        assert {rule["timeout"] for rule in by_kind(manifests, "VirtualService")["spec"]["http"]} == {"600s"}
    else:
        route = by_kind(manifests, "HTTPRoute")
        assert {rule["timeouts"]["request"] for rule in route["spec"]["rules"]} == {"600s"}
    assert by_kind(manifests, "Deployment")["spec"]["progressDeadlineSeconds"] == 3600


def test_knative_scales_on_concurrency_near_the_engines_batch_size():
    doc = _doc(processor_params=["--max-num-seqs=96"],
               autoscaler={"min": 0, "max": 3, "kpa": {"autoscaling.knative.dev/metric": "concurrency"}})
    annotations = by_kind(_render(doc, "knative"), "Service")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/target"] == "96"
    given = _doc(processor_params=["--max-num-seqs=96"], autoscaler={"min": 1, "max": 3, "kpa": {
        "autoscaling.knative.dev/metric": "concurrency", "autoscaling.knative.dev/target": 40}})
    annotations = by_kind(_render(given, "knative"), "Service")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/target"] == "40"  # the file's own target wins


def test_the_engines_metrics_are_scraped_where_they_are_served():
    for processor, port, gpu in (("vllm", "8000", 0), ("sglang", "30000", 1)):
        manifests = _render(_doc(processor=processor, metadata={"gpu": gpu}))
        annotations = by_kind(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (port, "/metrics")


# --- refused by name ---

def _problem_fields(doc, **settings) -> list[str]:
    settings = {"host_path_roots": (), "pod_security": "restricted", "knative": False, **settings}
    return [field for field, _ in service_file_problems(doc, **settings)]


def test_an_engine_without_model_path_is_refused_naming_it():
    doc = {key: value for key, value in _doc().items() if key != "model_path"}
    assert _problem_fields(doc) == ["model_path"]
    with pytest.raises(RenderError, match="model_path: the vllm processor serves the model at model_path"):
        render(desired_for(doc))


def test_sglang_without_a_gpu_is_refused_naming_metadata_gpu():
    doc = _doc(processor="sglang")
    assert _problem_fields(doc) == ["metadata.gpu"]
    with pytest.raises(RenderError, match="metadata.gpu: .*need an NVIDIA GPU"):
        render(desired_for(doc, flavor="knative"))


@pytest.mark.parametrize("param", ["--port=9000", "--host=127.0.0.1", "--served-model-name=other", "--model=/x"])
def test_flags_ferry_sets_are_refused_in_processor_params(param):
    doc = _doc(processor_params=["--max-model-len=512", param])
    assert _problem_fields(doc) == ["processor_params[1]"]


def test_shared_memory_that_would_take_the_whole_memory_limit_is_refused():
    assert _problem_fields(_doc(metadata={"shm_size": 8, "memory": 8000})) == ["metadata.shm_size"]


def test_rdma_between_engines_is_refused_by_name():
    assert _problem_fields(_doc(metadata={"gpu": 8, "rdma": 1})) == ["metadata.rdma"]


def test_tensor_parallelism_over_more_gpus_than_asked_is_refused():
    doc = _doc(metadata={"gpu": 2}, processor_params=["--tensor-parallel-size=4"])
    assert _problem_fields(doc) == ["processor_params[0]"]


# --- through Ferry's API and reconciler, into the fake API server ---

@pytest.fixture
def kube(fake):
    cluster = cluster_register(actor=None, name="kube", kubeconfig=kubeconfig(fake.url))
    project, _ = Project.objects.get_or_create(name="team_l")
    ClusterGrant.objects.get_or_create(project=project, cluster=cluster)
    return cluster


@pytest.fixture
def developer(kube):
    return api_client_for(make_member("dev_l", "team_l"))


def _create(api, document: dict):
    return api.post("/api/v2/services?WorkspaceId=team_l", document, format="json")


@pytest.mark.django_db
def test_an_sglang_service_without_a_gpu_is_refused_at_create_on_a_kubernetes_cluster(developer):
    document = {**CHAT, "processor": "sglang", "metadata": {**CHAT["metadata"], "resource": "kube"}}
    response = _create(developer, document)
    assert response.status_code == 400, response.json()
    assert "metadata.gpu" in [error["Path"] for error in response.json()["Errors"]]
    assert not Service.objects.filter(name="chat").exists()


@pytest.mark.django_db
def test_a_vllm_service_created_through_the_api_is_applied_with_its_gpu_and_startup_probe(developer, fake):
    document = {**CHAT, "metadata": {**CHAT["metadata"], "resource": "kube", "gpu": 1, "shm_size": 4}}
    response = _create(developer, document)
    assert response.status_code in (200, 201, 202), response.json()
    reconcile(Service.objects.get(name="chat").pk)
    deployment = fake.find("Deployment", "chat-v1")[0]
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert server["command"] == ["vllm", "serve"] and server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert server["startupProbe"]["failureThreshold"] * server["startupProbe"]["periodSeconds"] >= 1800


# --- scaling on the engine's own queue ---

def test_scaling_on_the_engines_waiting_queue_is_a_pods_metric_per_instance():
    doc = _doc(autoscaler={"min": 1, "max": 4, "scaleStrategies": [{"metricName": "llm[waiting]", "threshold": 3}]})
    hpa = by_kind(_render(doc), "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "engine_requests_waiting"},
                                                                "target": {"type": "AverageValue",
                                                                           "averageValue": "3"}}}]
    annotations = by_kind(_render(doc, "knative"), "Service")["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["autoscaling.knative.dev/class"], annotations["autoscaling.knative.dev/metric"],
            annotations["autoscaling.knative.dev/target"]) == ("hpa.autoscaling.knative.dev",
                                                              "engine_requests_waiting", "3")


def test_a_stopping_raw_pod_has_as_long_as_a_stream_to_finish_unless_the_file_says():
    drain = 5  # the test cluster's drain_seconds
    assert _pod(_doc())["terminationGracePeriodSeconds"] == 600 + drain
    assert _pod(_doc(metadata={"eas": {"termination_grace_period": 45}}))["terminationGracePeriodSeconds"] == 45 + drain


def test_a_storage_mount_never_reaches_the_nodes_files():
    # A location under the file's own mount is read from that volume: here an emptyDir, not the node's socket.
    doc = _doc(model_path="/var/run/docker.sock", storage=[{"empty_dir": {}, "mount_path": "/var/run"}])
    pod = _pod(doc)
    assert not any("hostPath" in volume for volume in pod["volumes"])
    assert _volume_at(pod, "/var/run")["emptyDir"] == {}
