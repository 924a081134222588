"""ServiceAutoScaler and ServiceCronScaler: Create, Describe, Update, Delete."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from services import services as writes
from services.errors import NotFound
from services.selectors.scaling import autoscaler_decision

from .. import serializers as s
from ..presenters import eas_time
from .base import EasView

TAG = ["Scaling"]
AUTOSCALER_DOC = ("EAS autoscaler: {min, max, scaleStrategies: [{metricName, threshold, service}], behavior: "
                  "{scaleUp: {stabilizationWindowSeconds}, scaleDown: {...}, onZero: {...}}}; validated as the "
                  "service file's `autoscaler` section.")


class AutoScalerView(EasView):
    @extend_schema(operation_id="DescribeServiceAutoScaler", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        if service.autoscaler is None:
            raise NotFound(f"Service {service.name} has no autoscaler.", code="AutoScalerNotFound")
        config = service.autoscaler
        decision = autoscaler_decision(service)
        return self.respond(request, {
            "ServiceName": service.name,
            "MinReplica": config.get("min"),
            "MaxReplica": config.get("max"),
            "ScaleStrategies": config.get("scaleStrategies", []),
            "Behavior": config.get("behavior", {}),
            "CurrentMetrics": _current_metrics(service, decision),
            # Ferry: the loop's latest decision and why (the KPA's settings are under Kpa).
            "Kpa": config.get("kpa"),
            "Decision": decision,
        })

    @extend_schema(operation_id="CreateServiceAutoScaler", tags=TAG, request=OpenApiTypes.OBJECT,
                   responses={200: OpenApiTypes.OBJECT}, description=AUTOSCALER_DOC)
    def post(self, request, cluster_id, service_name):
        return self._set(request, cluster_id, service_name)

    @extend_schema(operation_id="UpdateServiceAutoScaler", tags=TAG, request=OpenApiTypes.OBJECT,
                   responses={200: OpenApiTypes.OBJECT}, description=AUTOSCALER_DOC)
    def put(self, request, cluster_id, service_name):
        return self._set(request, cluster_id, service_name)

    @extend_schema(operation_id="DeleteServiceAutoScaler", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def delete(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        writes.autoscaler_delete(actor=request.user, service=service)
        return self.respond(request, {"Message": f"Removed the autoscaler of service {service.name}"})

    def _set(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        writes.autoscaler_set(actor=request.user, service=service, autoscaler=request.data)
        return self.respond(request, {"Message": f"Set the autoscaler of service {service.name}"})


def _current_metrics(service, decision: dict | None) -> list[dict]:
    if not decision or decision.get("stable") is None:
        return []
    return [{"metricName": "stable", "value": decision["stable"], "service": service.name},
            {"metricName": "panic", "value": decision.get("panic"), "service": service.name}]


class CronScalerView(EasView):
    @extend_schema(operation_id="DescribeServiceCronScaler", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        if service.cron_scaler is None:
            raise NotFound(f"Service {service.name} has no cron scaler.", code="CronScalerNotFound")
        jobs = [{**job, "CreateTime": eas_time(service.updated_at), "State": "Waiting", "LastProbeTime": "",
                 "Message": ""} for job in service.cron_scaler["ScaleJobs"]]
        return self.respond(request, {"ServiceName": service.name, "ScaleJobs": jobs,
                                      "ExcludeDates": service.cron_scaler["ExcludeDates"]})

    @extend_schema(operation_id="CreateServiceCronScaler", tags=TAG, request=s.CronScalerBody,
                   responses={200: OpenApiTypes.OBJECT})
    def post(self, request, cluster_id, service_name):
        return self._set(request, cluster_id, service_name)

    @extend_schema(operation_id="UpdateServiceCronScaler", tags=TAG, request=s.CronScalerBody,
                   responses={200: OpenApiTypes.OBJECT})
    def put(self, request, cluster_id, service_name):
        return self._set(request, cluster_id, service_name)

    @extend_schema(operation_id="DeleteServiceCronScaler", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def delete(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        writes.cron_scaler_delete(actor=request.user, service=service)
        return self.respond(request, {"Message": f"Removed the cron scaler of service {service.name}"})

    def _set(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        body = self.body(s.CronScalerBody, request)
        jobs = [dict(job) for job in body["ScaleJobs"]]
        writes.cron_scaler_set(actor=request.user, service=service, scale_jobs=jobs,
                               exclude_dates=body["ExcludeDates"])
        return self.respond(request, {"Message": f"Set the cron scaler of service {service.name}"})
