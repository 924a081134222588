"""ServiceAutoScaler and ServiceCronScaler: Create, Describe, Update, Delete."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from services import writes
from services.errors import NotFound
from services.selectors.scaling import autoscaler_decision, cron_job_records

from .. import serializers as s
from ..presenters import autoscaler_body, cron_scaler_body
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
        return self.respond(request, autoscaler_body(service, autoscaler_decision(service)))

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


class CronScalerView(EasView):
    @extend_schema(operation_id="DescribeServiceCronScaler", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name)
        if service.cron_scaler is None:
            raise NotFound(f"Service {service.name} has no cron scaler.", code="CronScalerNotFound")
        return self.respond(request, cron_scaler_body(service, cron_job_records(service)))

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
