"""Ferry-extension endpoints for credentials; included under "api/v2/"."""

from django.urls import path

from services.api.views.credentials import (
    AccessKeyDetailView,
    AccessKeyListView,
    ApiTokenDetailView,
    ApiTokenListView,
    ProjectStorageCredentialsView,
    WhoAmIView,
)

urlpatterns = [
    path("ferry/whoami", WhoAmIView.as_view(), name="ferry-whoami"),
    path("ferry/accesskeys", AccessKeyListView.as_view(), name="ferry-accesskeys"),
    path("ferry/accesskeys/<str:access_key_id>", AccessKeyDetailView.as_view(), name="ferry-accesskey"),
    path("ferry/tokens", ApiTokenListView.as_view(), name="ferry-tokens"),
    path("ferry/tokens/<int:token_id>", ApiTokenDetailView.as_view(), name="ferry-token"),
    path("ferry/projects/<str:project_name>/storagecredentials", ProjectStorageCredentialsView.as_view(),
         name="ferry-project-storage-credentials"),
]
