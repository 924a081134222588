"""UpdateServiceLabel, DeleteServiceLabel and UpdateServiceSafetyLock: what a user sets on a service without
making a version. All three answer at once (200): nothing waits for the deployer."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from services import writes

from .. import serializers_ops as s
from .base import EasView

TAG = ["Services"]


class LabelView(EasView):
    @extend_schema(operation_id="UpdateServiceLabel", tags=TAG, request=s.UpdateServiceLabelBody,
                   responses={200: OpenApiTypes.OBJECT},
                   description="Adds the labels given and changes those that exist; other labels stay.")
    def put(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        body = self.body(s.UpdateServiceLabelBody, request)
        writes.service_label_update(actor=request.user, service=service, labels=body["Labels"])
        return self.respond(request, {"Message": f"Updated the labels of service {service.name}"})

    @extend_schema(operation_id="DeleteServiceLabel", tags=TAG, parameters=[s.DeleteServiceLabelQuery],
                   responses={200: OpenApiTypes.OBJECT},
                   description="Removes the labels named; a key the service does not have is an error (404) "
                               "and then none is removed.")
    def delete(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        query = self.query(s.DeleteServiceLabelQuery, request)
        writes.service_label_delete(actor=request.user, service=service, keys=query["Keys"])
        return self.respond(request, {"Message": f"Deleted labels {', '.join(query['Keys'])} of service "
                                                 f"{service.name}"})


class SafetyLockView(EasView):
    @extend_schema(operation_id="UpdateServiceSafetyLock", tags=TAG, request=s.UpdateServiceSafetyLockBody,
                   responses={200: OpenApiTypes.OBJECT},
                   description="all refuses every change of the service, dangerous refuses delete, stop, "
                               "restart and instance deletion (409 ServiceLocked), none refuses nothing. "
                               "DescribeService shows it as SafetyLock.")
    def put(self, request, cluster_id, service_name):
        service = self.service(request, cluster_id, service_name, write=True)
        body = self.body(s.UpdateServiceSafetyLockBody, request)
        service = writes.service_safety_lock_update(actor=request.user, service=service, lock=body["Lock"])
        return self.respond(request, {"Message": f'Set the safety lock of service {service.name} to '
                                                 f'"{service.safety_lock}"'})
