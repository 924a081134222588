"""Request shapes of the label, safety-lock, clone and machine-spec operations, in EAS's PascalCase names."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from services.selectors.locks import LOCK_LEVELS

from .serializers import JsonObjectString


@extend_schema_field(OpenApiTypes.STR)
class CommaSeparated(serializers.Field):
    """A list the SDK sends in one query parameter, comma-joined ("simple" style): DeleteServiceLabel's Keys."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a comma-separated list")
        return [item.strip() for item in data.split(",") if item.strip()]

    def to_representation(self, value):
        return ",".join(value)


class UpdateServiceLabelBody(serializers.Serializer):
    # Validated by the write (services.writes.labels), which names each bad key.
    Labels = serializers.JSONField(help_text='The labels to add or change, e.g. {"team": "search"}.')


class DeleteServiceLabelQuery(serializers.Serializer):
    Keys = CommaSeparated(help_text="The label keys to remove, comma-separated.")


class UpdateServiceSafetyLockBody(serializers.Serializer):
    Lock = serializers.ChoiceField(choices=list(LOCK_LEVELS),
                                   help_text="all: every change refused; dangerous: delete, stop, restart and "
                                             "instance deletion refused; none: nothing refused.")


class CloneServiceQuery(serializers.Serializer):
    Labels = JsonObjectString(required=False, help_text="Labels of the new service, over the source's.")


class DescribeMachineSpecQuery(serializers.Serializer):
    InstanceTypes = CommaSeparated(required=False, default=list,
                                   help_text="Deprecated in EAS; when given, only these instance types.")
