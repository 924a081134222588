"""CloneService: a new service from an existing one's file, with a new name and a new token."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from services import selectors
from services import writes

from .. import serializers_ops as s
from ..presenters import predict_url
from .base import EasView


class CloneView(EasView):
    @extend_schema(operation_id="CloneService", tags=["Services"], parameters=[s.CloneServiceQuery],
                   request=OpenApiTypes.OBJECT, responses={202: OpenApiTypes.OBJECT},
                   description='The body is a merge patch over the source\'s service file that names the new '
                               'service, e.g. {"name": "iris_copy", "metadata": {"instance": 1}}. The clone is '
                               "made in the source's project, with a new token unless the body gives one.")
    def post(self, request, cluster_id, service_name):
        # Cloning reads the source and changes nothing of it: a locked source can be cloned.
        source = self.service(request, cluster_id, service_name)
        selectors.require_write(request.user, source.project)
        query = self.query(s.CloneServiceQuery, request)
        clone = writes.service_clone(actor=request.user, source=source, patch=request.data, labels=query.get("Labels"))
        body = {"ServiceId": clone.uid, "ServiceName": clone.name, "Status": clone.phase,
                "Region": clone.cluster.name, "InternetEndpoint": predict_url(clone.name),
                "IntranetEndpoint": predict_url(clone.name)}
        return self.respond(request, body, status=202)
