"""Ferry works out of the box: the embedded `local` cluster and the default project exist from the start."""

from django.conf import settings
from django.db import migrations


def create_defaults(apps, schema_editor):
    Cluster = apps.get_model("services", "Cluster")
    Project = apps.get_model("services", "Project")
    Cluster.objects.get_or_create(name="local", defaults={"kind": "local", "is_default": True})
    Project.objects.get_or_create(
        name=settings.FERRY_DEFAULT_PROJECT, defaults={"description": "Created by Ferry's first migration."}
    )


class Migration(migrations.Migration):
    dependencies = [("services", "0001_initial")]
    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
