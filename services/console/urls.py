from django.urls import path

from . import views
from .views import benchmarks

app_name = "console"
SERVICE = "services/<str:cluster_id>/<str:name>/"

urlpatterns = [
    path("", views.service_list, name="home"),
    path("project/", views.project_switch, name="project"),
    path("services/new/", views.service_create, name="service-create"),
    path(SERVICE, views.service_page, name="service"),
    path(f"{SERVICE}edit/", views.service_edit, name="service-edit"),
    path(f"{SERVICE}logs/download/", views.logs_download, name="logs-download"),
    path(f"{SERVICE}actions/<str:action>/", views.service_action, name="service-action"),
    path(f"{SERVICE}benchmarks/", benchmarks.benchmarks, name="benchmarks"),
    path(f"{SERVICE}<str:tab>/", views.service_page, name="service-tab"),
    path("benchmarks/<str:cluster_id>/<str:task_name>/", benchmarks.benchmark, name="benchmark"),
    path("benchmarks/<str:cluster_id>/<str:task_name>/<str:action>/", benchmarks.benchmark_action,
         name="benchmark-action"),
    path("clusters/", views.clusters, name="clusters"),
    path("keys/", views.keys, name="keys"),
    path("keys/access-keys/", views.access_key_create, name="access-key-create"),
    path("keys/access-keys/<str:key_id>/revoke/", views.access_key_revoke, name="access-key-revoke"),
    path("keys/tokens/", views.api_token_create, name="api-token-create"),
    path("keys/tokens/<int:token_id>/revoke/", views.api_token_revoke, name="api-token-revoke"),
]
