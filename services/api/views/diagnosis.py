"""DescribeServiceDiagnosis, DescribeServiceInstanceDiagnosis, ListServiceContainers and DescribeMachineSpec:
what is wrong, what runs, and what the machines offer."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from services.selectors.containers import instance_containers
from services.selectors.diagnosis import instance_diagnosis, service_diagnosis
from services.selectors.machines import machine_specs

from .. import serializers_ops as s
from ..presenters_ops import container_body, diagnosis_summary, finding_body, machine_spec_body
from .base import EasView

TAG = ["Observe"]


class ServiceDiagnosisView(EasView):
    @extend_schema(operation_id="DescribeServiceDiagnosis", tags=TAG, responses={200: OpenApiTypes.OBJECT},
                   description="What is wrong with the service and what to do, from its status, rollout and "
                               "instances; an empty DiagnosisList when no problem is found.")
    def get(self, request, cluster_id, service_name):
        findings = service_diagnosis(self.service(request, cluster_id, service_name))
        return self.respond(request, {"DiagnosisList": [finding_body(finding) for finding in findings],
                                      "Message": diagnosis_summary(len(findings))})


class InstanceDiagnosisView(EasView):
    @extend_schema(operation_id="DescribeServiceInstanceDiagnosis", tags=TAG, responses={200: OpenApiTypes.OBJECT},
                   description="What is wrong with one instance (a crash loop with its last exit and log lines, "
                               "a readiness check that never passes...); an empty Error when nothing is.")
    def get(self, request, cluster_id, service_name, instance_name):
        finding = instance_diagnosis(self.service(request, cluster_id, service_name), instance_name)
        return self.respond(request, {"Diagnosis": finding_body(finding),
                                      "Message": diagnosis_summary(0 if finding is None else 1)})


class ContainersView(EasView):
    @extend_schema(operation_id="ListServiceContainers", tags=TAG, responses={200: OpenApiTypes.OBJECT},
                   description="The containers of an instance: one, the process that serves (model server or "
                               "custom script), with its state, readiness, restarts and last exit.")
    def get(self, request, cluster_id, service_name, instance_name):
        service = self.service(request, cluster_id, service_name)
        containers = instance_containers(service, instance_name)
        return self.respond(request, {"ServiceName": service.name,
                                      "Containers": [container_body(container) for container in containers]})


class MachineSpecView(EasView):
    @extend_schema(operation_id="DescribeMachineSpec", tags=["Resources"], parameters=[s.DescribeMachineSpecQuery],
                   responses={200: OpenApiTypes.OBJECT},
                   description="What the local cluster's machine (this host) offers: CPUs and memory, no GPU.")
    def get(self, request):
        query = self.query(s.DescribeMachineSpecQuery, request)
        return self.respond(request, machine_spec_body(machine_specs(request.user, query["InstanceTypes"])))
