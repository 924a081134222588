from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v2/", include("services.api.urls")),
    path("", include("services.console.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="openapi-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="swagger-ui"),
]

# Errors outside the API's views answer in EAS's JSON shape under /api/ (services/api/fallbacks.py).
handler400 = "services.api.fallbacks.bad_request"
handler403 = "services.api.fallbacks.permission_denied"
handler404 = "services.api.fallbacks.not_found"
handler500 = "services.api.fallbacks.server_error"
