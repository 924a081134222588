"""Scaling settings the service's cluster would accept and then ignore are refused instead, by field.

The service file's schema accepts every EAS scaling strategy (a file must read the same everywhere), but what
acts on them depends on the cluster: the local cluster's autoscaler loop measures qps and cpu (and Knative's KPA
metrics) only, and nothing anywhere measures another service's metric. A service that silently ran without the
scaling its file asks for would behave unlike EAS, so these are errors at create and update time, for the
service file's `autoscaler` and for Create/UpdateServiceAutoScaler alike.
"""

from services.errors import InvalidRequest
from services.models import Cluster, ClusterKind, Service

# On the local cluster, by metric: why it is not measured. Kubernetes clusters render them as HPA or Knative
# metrics (docs/kubernetes.md).
NOT_ON_LOCAL_CLUSTERS = {
    "gpu[util]": "the local cluster runs no GPU instances, so there is no GPU utilization to scale on; "
                 "use qps or cpu, or run the service on a Kubernetes cluster",
    "queue[backlog]": 'a queue backlog is measured for asynchronous services only (metadata.type "Async", '
                      "docs/async.md): make the service asynchronous, or use qps or cpu",
}
# Measured on the local cluster for asynchronous services (their input queue's length, deployer/autoscaling.py).
ASYNC_METRICS = ("queue[backlog]",)
OTHER_SERVICE = ("scaling on another service's metric is not supported yet: the autoscaler measures this "
                 "service only; remove `service` (or name this service)")


def autoscaler_errors(autoscaler: dict | None, *, cluster: Cluster, service_name: str,
                      asynchronous: bool = False) -> list[dict]:
    """[{"Path", "Message"}] for every strategy the cluster would ignore. `asynchronous`: the service has queues."""
    errors = []
    for index, strategy in enumerate((autoscaler or {}).get("scaleStrategies") or []):
        path = f"autoscaler.scaleStrategies[{index}]"
        metric = strategy.get("metricName")
        if cluster.kind == ClusterKind.LOCAL and metric in NOT_ON_LOCAL_CLUSTERS and \
                not (asynchronous and metric in ASYNC_METRICS):
            errors.append({"Path": f"{path}.metricName",
                           "Message": f"{metric} is not supported yet: {NOT_ON_LOCAL_CLUSTERS[metric]}"})
        other = strategy.get("service")
        if other and other != service_name:
            errors.append({"Path": f"{path}.service", "Message": f'"{other}": {OTHER_SERVICE}'})
    return errors


def autoscaler_check_supported(autoscaler: dict | None, *, cluster: Cluster, service_name: str,
                               asynchronous: bool = False) -> None:
    errors = autoscaler_errors(autoscaler, cluster=cluster, service_name=service_name, asynchronous=asynchronous)
    if errors:
        raise InvalidRequest("; ".join(f"{e['Path']}: {e['Message']}" for e in errors), errors=errors,
                             code="InvalidServiceConfig")


def cron_scaler_check_supported(service: Service) -> None:
    """The cron scaler is applied by the local cluster's autoscaler loop; on Kubernetes the HPA or Knative
    decides the count, and a schedule nothing applies would be a setting silently ignored."""
    if service.cluster.kind != ClusterKind.LOCAL:
        raise InvalidRequest.at(
            "ScaleJobs",
            f'cron scalers are not supported on Kubernetes clusters yet (service {service.name} runs on '
            f'"{service.cluster.name}"): its autoscaler (HPA or Knative) decides the count there; raise the '
            "autoscaler's min instead",
            code="CronScalerNotSupported")
