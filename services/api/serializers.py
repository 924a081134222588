"""Request shapes of the EAS-compatible API: query parameters and bodies, in EAS's PascalCase names."""

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from services.selectors.catalog import SORTABLE_FIELDS

EAS_TIME_FORMATS = ["iso-8601", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"]


@extend_schema_field(OpenApiTypes.STR)
class JsonObjectString(serializers.Field):
    """A query parameter that carries a JSON object, as the SDK encodes Labels."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            return data
        try:
            value = json.loads(data)
        except (TypeError, ValueError):
            raise serializers.ValidationError("must be a JSON object") from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise serializers.ValidationError("must be a JSON object of strings")
        return value

    def to_representation(self, value):
        return json.dumps(value)


class PageQuery(serializers.Serializer):
    PageNumber = serializers.IntegerField(min_value=1, default=1)
    PageSize = serializers.IntegerField(min_value=1, max_value=1000, default=100)


class PageNumQuery(serializers.Serializer):
    """Events and logs page with PageNum (not PageNumber) in EAS."""

    PageNum = serializers.IntegerField(min_value=1, default=1)
    PageSize = serializers.IntegerField(min_value=1, max_value=1000, default=100)


class ListServicesQuery(PageQuery):
    Filter = serializers.CharField(required=False, allow_blank=True, default="")
    ServiceName = serializers.CharField(required=False, allow_blank=True, default="")
    GroupName = serializers.CharField(required=False, allow_blank=True, default="")
    ServiceStatus = serializers.CharField(required=False, allow_blank=True, default="")
    ResourceName = serializers.CharField(required=False, allow_blank=True, default="")
    WorkspaceId = serializers.CharField(required=False, allow_blank=True, default="")
    Sort = serializers.ChoiceField(choices=list(SORTABLE_FIELDS), allow_blank=True, required=False, default="")
    Order = serializers.ChoiceField(choices=["asc", "desc", "ASC", "DESC"], required=False, default="desc")
    Label = JsonObjectString(required=False)

    # EAS filters Ferry has no data for: a filter that matched everything would answer a different question.
    UNSUPPORTED_FILTERS = ("Gateway", "QuotaId", "Role", "ServiceType", "ParentServiceUid", "ResourceType",
                           "ServiceUid")

    def validate(self, attrs):
        given = [name for name in self.UNSUPPORTED_FILTERS if self.initial_data.get(name)]
        if given:
            raise serializers.ValidationError({name: "filtering by it is not supported; leave it out"
                                               for name in given})
        return attrs


class CreateServiceQuery(serializers.Serializer):
    WorkspaceId = serializers.CharField(required=False, allow_blank=True, default="")
    Labels = JsonObjectString(required=False)
    Develop = serializers.CharField(required=False, allow_blank=True, default="")

    def validate_Develop(self, value):
        # EAS's development mode keeps an instance's container up without its program, for a person to work in.
        if value.lower() not in ("", "false"):
            raise serializers.ValidationError("development mode is not supported: leave it out or set it to false")
        return value


class UpdateServiceQuery(serializers.Serializer):
    UpdateType = serializers.ChoiceField(choices=["merge", "replace"], required=False, default="merge")
    Strategy = serializers.ChoiceField(choices=["rolling", "canary", "blue-green"], required=False, default=None,
                                       help_text="Ferry: how a new version rolls out (else the file's rollout).")
    CanaryWeight = serializers.IntegerField(min_value=0, max_value=100, required=False, default=None,
                                            help_text="Ferry: the canary's share of traffic, in percent.")


class CanaryWeightBody(serializers.Serializer):
    CanaryWeight = serializers.IntegerField(min_value=0, max_value=100)


class CanaryBody(serializers.Serializer):
    Weight = serializers.IntegerField(min_value=0, max_value=100)


class UpdateServiceVersionBody(serializers.Serializer):
    Version = serializers.IntegerField(min_value=1)


class ReleaseServiceBody(serializers.Serializer):
    Weight = serializers.IntegerField(min_value=0, max_value=100, required=False, allow_null=True)
    TrafficState = serializers.ChoiceField(choices=["standalone", "grouping"], required=False, allow_null=True)


class TrafficBody(serializers.Serializer):
    Weights = serializers.DictField(child=serializers.IntegerField(min_value=0, max_value=100), allow_empty=False)

    def validate_Weights(self, value):
        try:
            return {int(number): weight for number, weight in value.items()}
        except ValueError:
            raise serializers.ValidationError("keys must be version numbers") from None


class MirrorBody(serializers.Serializer):
    Target = serializers.ListField(child=serializers.CharField(), allow_empty=False)
    Ratio = serializers.IntegerField(min_value=0, max_value=100)


class ScaleJob(serializers.Serializer):
    Name = serializers.RegexField(r"^[a-zA-Z][a-zA-Z0-9_-]{0,62}$", max_length=63)
    Schedule = serializers.CharField()
    TargetSize = serializers.IntegerField(min_value=0)
    TimeZone = serializers.CharField(required=False, allow_blank=True, default="UTC")


class CronScalerBody(serializers.Serializer):
    ScaleJobs = ScaleJob(many=True)
    ExcludeDates = serializers.ListField(child=serializers.CharField(), required=False, default=list)


class DeleteInstancesQuery(serializers.Serializer):
    InstanceList = serializers.CharField()
    SoftRestart = serializers.BooleanField(required=False, default=False)
    Container = serializers.CharField(required=False, allow_blank=True, default="")

    def validate_SoftRestart(self, value):
        if value:  # EAS restarts the process inside the running container; Ferry always replaces the instance.
            raise serializers.ValidationError("a soft restart (in place) is not supported: leave it out or set "
                                              "it to false, and the instances are replaced")
        return value

    def validate_Container(self, value):
        if value:  # Ferry's instances have one container each: restarting one container is restarting it all.
            raise serializers.ValidationError("restarting one container of an instance is not supported: leave "
                                              "it out, and the whole instance is replaced")
        return value


class ListInstancesQuery(PageQuery):
    InstanceName = serializers.CharField(required=False, allow_blank=True, default="")
    InstanceStatus = serializers.CharField(required=False, allow_blank=True, default="")
    InstanceIP = serializers.CharField(required=False, allow_blank=True, default="")
    Filter = serializers.CharField(required=False, allow_blank=True, default="")


class EventsQuery(PageNumQuery):
    EventType = serializers.ChoiceField(choices=["Normal", "Warning"], allow_blank=True, required=False, default="")
    InstanceName = serializers.CharField(required=False, allow_blank=True, default="")
    StartTime = serializers.DateTimeField(required=False, input_formats=EAS_TIME_FORMATS, default=None)
    EndTime = serializers.DateTimeField(required=False, input_formats=EAS_TIME_FORMATS, default=None)


class LogsQuery(EventsQuery):
    Keyword = serializers.CharField(required=False, allow_blank=True, default="")
    Ip = serializers.CharField(required=False, allow_blank=True, default="")
    ContainerName = serializers.CharField(required=False, allow_blank=True, default="")
    Previous = serializers.BooleanField(required=False, default=False)


class ListGroupsQuery(PageQuery):
    Filter = serializers.CharField(required=False, allow_blank=True, default="")
    WorkspaceId = serializers.CharField(required=False, allow_blank=True, default="")
