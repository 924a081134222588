"""EAS's benchmark-task operations (CreateBenchmarkTask ... DescribeBenchmarkTaskReport) at the SDK's paths and
with its field names; Ferry's additions (Progress, Config, times, the report's Summary) ride along in the same
bodies. docs/benchmarks.md says what a task's configuration may hold and what the report means."""

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from services.models import BenchmarkState, BenchmarkTask
from services.selectors import paginate
from services.selectors.benchmarks import benchmark_for, benchmarks_list
from services import writes

from ..presenters import eas_time
from ..serializers import PageQuery
from .base import EasView, page_body

TAG = ["Benchmark tasks"]


class ListBenchmarkTaskQuery(PageQuery):
    ServiceName = serializers.CharField(required=False, default="", allow_blank=True,
                                        help_text="Only this service's tasks.")
    Filter = serializers.CharField(required=False, default="", allow_blank=True,
                                   help_text="Only tasks whose name holds this.")


class ReportQuery(serializers.Serializer):
    ReportType = serializers.ChoiceField(choices=["RAW", "Report"], required=False, default="RAW",
                                         help_text="RAW: the report as data; Report: also its console page.")


def message(task: BenchmarkTask) -> str:
    """EAS's Message; while a task runs it leads with the progress, which the SDK's models keep (they drop
    fields they do not know, such as Progress)."""
    if task.state == BenchmarkState.RUNNING:
        return f"{task.progress:.0f}% done: {task.message}"
    return task.message


def task_row(task: BenchmarkTask) -> dict:
    return {"TaskId": task.task_id, "TaskName": task.name, "ServiceName": task.service.name,
            "Region": task.cluster.name, "Status": task.state, "Reason": task.reason, "Message": message(task),
            "Progress": round(task.progress, 1), "AvailableAgent": 1, "CreateTime": eas_time(task.created_at),
            "UpdateTime": eas_time(task.updated_at)}


def task_body(task: BenchmarkTask) -> dict:
    summary = (task.report or {}).get("Summary")
    return {**task_row(task), "DesiredAgent": 1,
            "CallerUid": task.created_by.username if task.created_by else "", "ParentUid": task.project.name,
            "Endpoint": settings.FERRY_GATEWAY_URL.rstrip("/"),
            "Token": "",  # never shown: the runner sends the service's own token
            "Config": task.config, "StartTime": eas_time(task.started_at), "EndTime": eas_time(task.finished_at),
            **({"Summary": summary} if summary else {})}


def _config(request) -> object:
    return request.data if isinstance(request.data, (dict, str)) else ""


class BenchmarkTasksView(EasView):
    @extend_schema(operation_id="CreateBenchmarkTask", tags=TAG, request=OpenApiTypes.OBJECT,
                   responses={200: OpenApiTypes.OBJECT},
                   description="The body is the task's configuration (EAS's: service.serviceName, base.duration, "
                               "base.qps, base.concurrency, data.content, optional.maxRt; docs/benchmarks.md). "
                               "The task is queued at once; out-of-bounds settings are refused by field name.")
    def post(self, request):
        task = writes.benchmark_create(actor=request.user, config=_config(request))
        return self.respond(request, {"TaskName": task.name, "Region": task.cluster.name,
                                      "Message": f"Benchmark task {task.name} created: {task.message}"})

    @extend_schema(operation_id="ListBenchmarkTask", tags=TAG, parameters=[ListBenchmarkTaskQuery],
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        query = self.query(ListBenchmarkTaskQuery, request)
        page = paginate(benchmarks_list(request.user, service_name=query["ServiceName"],
                                        name_contains=query["Filter"]), query["PageNumber"], query["PageSize"])
        return self.respond(request, page_body(page, "Tasks", [task_row(task) for task in page.items]))


class BenchmarkTaskView(EasView):
    @extend_schema(operation_id="DescribeBenchmarkTask", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster_id, task_name):
        return self.respond(request, task_body(benchmark_for(request.user, cluster_id, task_name)))

    @extend_schema(operation_id="UpdateBenchmarkTask", tags=TAG, request=OpenApiTypes.OBJECT,
                   responses={200: OpenApiTypes.OBJECT},
                   description="A new configuration for a task that is not running (409 otherwise).")
    def put(self, request, cluster_id, task_name):
        task = benchmark_for(request.user, cluster_id, task_name, write=True)
        task = writes.benchmark_update(actor=request.user, task=task, config=_config(request))
        return self.respond(request, {"Message": f"Benchmark task {task.name} updated: {task.message}"})

    @extend_schema(operation_id="DeleteBenchmarkTask", tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def delete(self, request, cluster_id, task_name):
        task = benchmark_for(request.user, cluster_id, task_name, write=True)
        writes.benchmark_delete(actor=request.user, task=task)
        return self.respond(request, {"Message": f"Benchmark task {task.name} deleted"})


class StartBenchmarkTaskView(EasView):
    @extend_schema(operation_id="StartBenchmarkTask", tags=TAG, request=None, responses={200: OpenApiTypes.OBJECT},
                   description="Runs the task again from the start (its report starts empty).")
    def put(self, request, cluster_id, task_name):
        task = writes.benchmark_start(actor=request.user,
                                      task=benchmark_for(request.user, cluster_id, task_name, write=True))
        return self.respond(request, {"Message": f"Benchmark task {task.name} is starting"})


class StopBenchmarkTaskView(EasView):
    @extend_schema(operation_id="StopBenchmarkTask", tags=TAG, request=None, responses={200: OpenApiTypes.OBJECT},
                   description="The runner stops within a second; the report keeps what was measured.")
    def put(self, request, cluster_id, task_name):
        task = writes.benchmark_stop(actor=request.user,
                                     task=benchmark_for(request.user, cluster_id, task_name, write=True))
        return self.respond(request, {"Message": f"Benchmark task {task.name} is stopping"})


class BenchmarkReportView(EasView):
    @extend_schema(operation_id="DescribeBenchmarkTaskReport", tags=TAG, parameters=[ReportQuery],
                   responses={200: OpenApiTypes.OBJECT},
                   description="Data: {Summary, Rows: one per second (Qps, P50/P90/P99 in ms, Errors, "
                               "StatusCodes)}; ReportUrl: the console's page with its charts.")
    def get(self, request, cluster_id, task_name):
        query = self.query(ReportQuery, request)
        task = benchmark_for(request.user, cluster_id, task_name)
        report = {"Status": task.state, "Progress": round(task.progress, 1), "Summary": {}, "Rows": [],
                  **(task.report or {})}
        url = request.build_absolute_uri(reverse("console:benchmark", args=[task.cluster.name, task.name]))
        body = {"Data": report, "ReportUrl": url} if query["ReportType"] == "RAW" else {"ReportUrl": url}
        return self.respond(request, body)
