"""Project membership decides what a user may see and change; what is not theirs does not exist for them."""

import json

import pytest
from django.urls import URLPattern

from services.api import urls as api_urls
from services.models import Service

from .conftest import api_client_for, example, make_member

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("post", "put", "delete")


def service_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the API that addresses one service: new endpoints are covered automatically."""
    routes = []
    for pattern in api_urls.urlpatterns:
        if not isinstance(pattern, URLPattern) or "<str:service_name>" not in str(pattern.pattern):
            continue
        view_class = pattern.callback.view_class
        path = "/api/v2/" + str(pattern.pattern).replace("<str:cluster_id>", "local").replace(
            "<str:service_name>", "iris_sklearn")
        routes.extend((method, path) for method in ("get", "post", "put", "delete") if hasattr(view_class, method))
    return routes


@pytest.fixture
def alices_service(alice_api) -> Service:
    response = alice_api.post("/api/v2/services", example("iris_sklearn.json"), format="json")
    assert response.status_code == 202, response.content
    alice_api.post("/api/v2/services", {**example("bert_tfserving.json")}, format="json")
    return Service.objects.get(name="iris_sklearn")


def snapshot(service: Service) -> tuple:
    service.refresh_from_db()
    return service.generation, service.spec, service.deletion_requested_at, service.events.count()


def test_it_covers_every_service_endpoint():
    methods = {method for method, _ in service_routes()}
    assert len(service_routes()) >= 25
    assert methods == {"get", "post", "put", "delete"}


@pytest.mark.parametrize("method,path", service_routes())
def test_it_hides_another_projects_service_from_every_endpoint(method, path, alices_service, bob_api):
    before = snapshot(alices_service)
    response = getattr(bob_api, method)(path, {"metadata": {"instance": 5}}, format="json") \
        if method in ("post", "put") else getattr(bob_api, method)(path)
    assert response.status_code == 404, (method, path, response.content)
    assert response.json()["Code"] == "ServiceNotFound"
    assert snapshot(alices_service) == before


def test_it_leaves_another_projects_services_out_of_lists(alices_service, bob_api, alice_api):
    assert bob_api.get("/api/v2/services").json()["TotalCount"] == 0
    assert bob_api.get("/api/v2/groups").json()["Groups"] == []
    assert bob_api.get("/api/v2/resources/local/local/services").json()["TotalCount"] == 0
    assert bob_api.get("/api/v2/groups/local/bert").status_code == 404
    assert alice_api.get("/api/v2/services").json()["TotalCount"] == 2


def test_it_refuses_to_create_in_a_project_you_do_not_belong_to(alice_api, bob):
    response = alice_api.post("/api/v2/services?WorkspaceId=team_b", example("iris_sklearn.json"), format="json")
    assert response.status_code == 404
    assert Service.objects.count() == 0


@pytest.mark.parametrize("method,path", [route for route in service_routes() if route[0] in WRITE_METHODS])
def test_it_lets_a_viewer_read_but_not_change(method, path, alices_service):
    viewer = api_client_for(make_member("victor", "team_a", role="viewer"))
    assert viewer.get("/api/v2/services/local/iris_sklearn").status_code == 200
    before = snapshot(alices_service)
    response = getattr(viewer, method)(path, {"metadata": {"instance": 5}}, format="json")
    assert response.status_code == 403, (method, path, response.content)
    assert snapshot(alices_service) == before


def test_it_does_not_show_the_service_token_to_a_viewer(alices_service, alice_api):
    viewer = api_client_for(make_member("victor", "team_a", role="viewer"))
    assert "AccessToken" not in viewer.get("/api/v2/services/local/iris_sklearn").json()
    assert viewer.get("/api/v2/services/local/iris_sklearn/endpoints").json()["AccessToken"] == ""
    token = alice_api.get("/api/v2/services/local/iris_sklearn").json()["AccessToken"]
    assert len(token) >= 32
    assert token not in json.dumps(alices_service.spec)
