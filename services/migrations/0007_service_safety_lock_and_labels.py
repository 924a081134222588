from django.db import migrations, models


def labels_out_of_spec(apps, schema_editor):
    """Labels used to stay inside the stored service file; they are the service's own now (the `labels` column),
    so a file's labels join those and leave the file. The Labels query parameter wins, as it does on create."""
    Service = apps.get_model("services", "Service")
    for service in Service.objects.filter(spec__has_key="labels"):
        spec = dict(service.spec)
        service.labels = {**(spec.pop("labels") or {}), **(service.labels or {})}
        service.spec = spec
        service.save(update_fields=["labels", "spec"])


class Migration(migrations.Migration):

    dependencies = [
        ("services", "0006_service_activation"),
    ]

    operations = [
        migrations.AddField(
            model_name="service",
            name="safety_lock",
            field=models.CharField(default="none", max_length=16),
        ),
        migrations.RunPython(labels_out_of_spec, migrations.RunPython.noop),
    ]
