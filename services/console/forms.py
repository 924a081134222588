"""Console forms. They shape input into what services.writes takes; the domain does the validating (the same
checks as the API), and its errors, by JSON path, are put back beside the fields they are about."""

import json

from django import forms

from .documents import errors_of, parse

PROCESSORS = ["sklearn", "xgboost", "lightgbm", "onnx", "python", "triton", "tfserving", "torchserve",
              "mlserver", "pmml", "custom"]


class PathErrorsMixin:
    """Puts [{"Path", "Message"}] errors on the field mapped to each path, the rest on the form."""

    path_fields: dict[str, str] = {}

    def add_path_errors(self, exc: Exception) -> None:
        for error in errors_of(exc):
            field_name = self.field_for(error["Path"])
            text = error["Message"] if field_name else f"{error['Path']}: {error['Message']}"
            self.add_error(field_name, text)

    def field_for(self, path: str) -> str | None:
        for prefix, name in self.path_fields.items():
            if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
                return name if name in self.fields else None
        return None


class ServiceForm(PathErrorsMixin, forms.Form):
    """The common fields of a service file. Empty fields are left out of the file."""

    path_fields = {
        "name": "name", "metadata.name": "name", "processor": "processor", "model_path": "model_path",
        "warm_up_data_path": "warm_up_data_path", "metadata.resource": "cluster",
        "metadata.instance": "instances", "metadata.cpu": "cpu", "metadata.memory": "memory",
        "containers[0].image": "image", "containers[0].script": "script", "containers[0].port": "port",
        "WorkspaceId": "project",
    }

    project = forms.ChoiceField(label="Project", help_text="Who may see and change the service.")
    name = forms.CharField(label="Name", max_length=63,
                           help_text="Lowercase letters, digits and underscores; starts with a letter.")
    cluster = forms.ChoiceField(label="Cluster", required=False)
    processor = forms.ChoiceField(label="Processor", choices=[(p, p) for p in PROCESSORS])
    model_path = forms.CharField(label="Model path", required=False,
                                 help_text="file://, http(s)://, s3:// or oss:// (a directory ends with /).")
    warm_up_data_path = forms.CharField(label="Warm-up requests", required=False,
                                        help_text="A JSON list of requests sent before the instance takes traffic.")
    instances = forms.IntegerField(label="Instances", initial=1, required=False)
    cpu = forms.FloatField(label="CPU (cores per instance)", initial=1, required=False)
    memory = forms.IntegerField(label="Memory (MB per instance)", initial=1024, required=False)
    image = forms.CharField(label="Image (custom)", required=False)
    script = forms.CharField(label="Command (custom)", required=False)
    port = forms.IntegerField(label="Port (custom)", required=False)

    def __init__(self, *args, projects=(), clusters=(), editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].choices = [(p.name, p.name) for p in projects]
        self.fields["cluster"].choices = [("", "Default cluster")] + [(c.name, c.name) for c in clusters]
        if editing:
            for name in ("project", "name", "cluster"):
                del self.fields[name]

    def document(self) -> dict:
        data = self.cleaned_data
        metadata = {key: data[field] for key, field in (("instance", "instances"), ("cpu", "cpu"),
                                                          ("memory", "memory")) if data.get(field) is not None}
        if data.get("cluster"):
            metadata["resource"] = data["cluster"]
        if isinstance(metadata.get("cpu"), float) and metadata["cpu"].is_integer():
            metadata["cpu"] = int(metadata["cpu"])
        document = {"processor": data["processor"], "metadata": metadata}
        if "name" in self.fields:
            document["name"] = data["name"]
        for key in ("model_path", "warm_up_data_path"):
            if data.get(key):
                document[key] = data[key]
        if data["processor"] == "custom":
            container = {"image": data.get("image") or ""}
            if data.get("script"):
                container["script"] = data["script"]
            if data.get("port"):
                container["port"] = data["port"]
            document["containers"] = [container]
        return document

    @classmethod
    def initial_from(cls, spec: dict, instance_count: int) -> dict:
        metadata = spec.get("metadata", {})
        container = (spec.get("containers") or [{}])[0]
        return {"processor": spec.get("processor", "custom" if spec.get("containers") else "sklearn"),
                "model_path": spec.get("model_path", ""), "warm_up_data_path": spec.get("warm_up_data_path", ""),
                "instances": instance_count, "cpu": metadata.get("cpu"), "memory": metadata.get("memory"),
                "image": container.get("image", ""), "script": container.get("script", ""),
                "port": container.get("port")}


class ServiceFileForm(PathErrorsMixin, forms.Form):
    """A whole service file, pasted or uploaded. Errors stay by JSON path (shown on the annotated listing)."""

    project = forms.ChoiceField(label="Project", required=False)
    text = forms.CharField(label="Service file (JSON)", required=False, strip=False,
                           widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "code"}))
    upload = forms.FileField(label="…or upload a .json file", required=False)

    def __init__(self, *args, projects=None, **kwargs):
        super().__init__(*args, **kwargs)
        if projects is None:
            del self.fields["project"]
        else:
            self.fields["project"].choices = [(p.name, p.name) for p in projects]
        self.path_errors: list[dict] = []
        self.document = None

    def clean(self):
        data = super().clean()
        upload = data.get("upload")
        if upload:
            data["text"] = upload.read(1024 * 1024).decode("utf-8", errors="replace")
        self.document, self.path_errors = parse(data.get("text") or "")
        return data

    def add_path_errors(self, exc: Exception) -> None:
        self.path_errors = errors_of(exc)

    @property
    def has_path_errors(self) -> bool:
        return bool(self.path_errors)


class WeightsForm(forms.Form):
    """One number per version: `weight_<number>`."""

    def __init__(self, *args, versions=(), **kwargs):
        super().__init__(*args, **kwargs)
        for version in versions:
            self.fields[f"weight_{version.number}"] = forms.IntegerField(
                label=f"v{version.number}", min_value=0, max_value=100, initial=version.asked_weight)

    def weights(self) -> dict[int, int]:
        return {int(name.removeprefix("weight_")): value for name, value in self.cleaned_data.items() if value}


class CanaryForm(forms.Form):
    percent = forms.IntegerField(label="Canary share", min_value=0, max_value=100)


class ScaleForm(forms.Form):
    instances = forms.IntegerField(label="Instances", min_value=0, max_value=1000)


class AutoscalerForm(PathErrorsMixin, forms.Form):
    path_fields = {"autoscaler.min": "min", "autoscaler.max": "max",
                   "autoscaler.scaleStrategies[0].metricName": "metric",
                   "autoscaler.scaleStrategies[0].threshold": "threshold", "autoscaler": "min"}
    min = forms.IntegerField(label="Minimum instances", min_value=0)
    max = forms.IntegerField(label="Maximum instances", min_value=1)
    metric = forms.ChoiceField(label="Metric", choices=[("qps", "QPS per instance"), ("cpu", "CPU %"),
                                                        ("concurrency", "Concurrency per instance"),
                                                        ("llm[waiting]", "LLM engine queue per instance")])
    threshold = forms.FloatField(label="Target per instance", min_value=0)

    def autoscaler(self) -> dict:
        data = self.cleaned_data
        threshold = int(data["threshold"]) if float(data["threshold"]).is_integer() else data["threshold"]
        return {"min": data["min"], "max": data["max"],
                "scaleStrategies": [{"metricName": data["metric"], "threshold": threshold}]}


class CronScalerForm(PathErrorsMixin, forms.Form):
    """EAS ScaleJobs as JSON; errors come back by path (ScaleJobs[0].Schedule)."""

    path_fields = {"ScaleJobs": "jobs", "ExcludeDates": "exclude_dates"}
    jobs = forms.CharField(label="Scale jobs (JSON)", widget=forms.Textarea(attrs={"rows": 5, "class": "code"}))
    exclude_dates = forms.CharField(label="Exclude dates (one cron expression a line)", required=False,
                                    widget=forms.Textarea(attrs={"rows": 2, "class": "code"}))

    def clean_jobs(self):
        jobs, errors = parse(self.cleaned_data["jobs"])
        if errors:
            raise forms.ValidationError(errors[0]["Message"])
        if not isinstance(jobs, list) or not all(isinstance(job, dict) for job in jobs):
            raise forms.ValidationError('a list of jobs, e.g. [{"Name": "day", "Schedule": "0 0 8 * * *", '
                                        '"TargetSize": 2}]')
        for index, job in enumerate(jobs):
            missing = [key for key in ("Name", "Schedule", "TargetSize") if key not in job]
            if missing:
                raise forms.ValidationError(f"ScaleJobs[{index}]: give {', '.join(missing)}")
        return jobs

    def clean_exclude_dates(self):
        return [line.strip() for line in self.cleaned_data["exclude_dates"].splitlines() if line.strip()]

    def add_path_errors(self, exc: Exception) -> None:
        for error in errors_of(exc):
            field_name = self.field_for(error["Path"]) or "jobs"
            self.add_error(field_name, f"{error['Path']}: {error['Message']}")


class MirrorForm(PathErrorsMixin, forms.Form):
    path_fields = {"Target": "targets", "Ratio": "ratio"}
    targets = forms.CharField(label="Mirror to (service names, comma-separated)")
    ratio = forms.IntegerField(label="Share of requests copied (%)", min_value=0, max_value=100)

    def target_list(self) -> list[str]:
        return [name.strip() for name in self.cleaned_data["targets"].split(",") if name.strip()]


class InvokeForm(forms.Form):
    protocol = forms.ChoiceField(label="Protocol", choices=[("eas", "EAS /api/predict"), ("v1", "KServe V1"),
                                                            ("v2", "Open Inference V2")])
    instance = forms.CharField(label="Instance", required=False)
    body = forms.CharField(label="Request body", strip=False,
                           widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "code"}))


class AccessKeyForm(forms.Form):
    description = forms.CharField(label="Description", max_length=255, required=False)


class ApiTokenForm(forms.Form):
    name = forms.CharField(label="Token name", max_length=100)


def dumps(value) -> str:
    return json.dumps(value, indent=2)

