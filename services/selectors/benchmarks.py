"""Reads of benchmark tasks, with the access rules of services: a task is seen by whoever sees its project's
services (others get 404), and changed by its project's developers and owners (viewers get 403)."""

from django.db.models import QuerySet

from services.errors import NotFound
from services.models import BenchmarkTask

from .access import projects_of, require_write


def benchmarks_visible_to(user) -> QuerySet[BenchmarkTask]:
    tasks = BenchmarkTask.objects.select_related("cluster", "project", "service", "created_by")
    if user.is_superuser:
        return tasks
    return tasks.filter(project__in=projects_of(user))


def benchmark_for(user, cluster_id: str, task_name: str, *, write: bool = False) -> BenchmarkTask:
    task = benchmarks_visible_to(user).filter(cluster__name=cluster_id, name=task_name).first()
    if task is None:
        raise NotFound(f"Benchmark task {task_name} not found in cluster {cluster_id}.",
                       code="BenchmarkTaskNotFound")
    if write:
        require_write(user, task.project)
    return task


def benchmarks_list(user, *, service_name: str = "", name_contains: str = "", cluster: str = "",
                    service=None) -> QuerySet[BenchmarkTask]:
    tasks = benchmarks_visible_to(user)
    if service is not None:
        tasks = tasks.filter(service=service)
    if service_name:
        tasks = tasks.filter(service__name=service_name)
    if name_contains:
        tasks = tasks.filter(name__icontains=name_contains)
    if cluster:
        tasks = tasks.filter(cluster__name=cluster)
    return tasks
