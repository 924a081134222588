"""The OpenAPI 3 document describes the EAS operations, validates, and its Swagger UI needs no internet."""

import re

import pytest
from openapi_spec_validator import validate
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

EAS_OPERATIONS = {
    "CreateService", "ListServices", "DescribeService", "UpdateService", "DeleteService", "StartService",
    "StopService", "RestartService", "ListServiceVersions", "UpdateServiceVersion", "ReleaseService",
    "CreateServiceAutoScaler", "DescribeServiceAutoScaler", "UpdateServiceAutoScaler", "DeleteServiceAutoScaler",
    "CreateServiceCronScaler", "DescribeServiceCronScaler", "UpdateServiceCronScaler", "DeleteServiceCronScaler",
    "CreateServiceMirror", "DescribeServiceMirror", "UpdateServiceMirror", "DeleteServiceMirror",
    "ListServiceInstances", "DeleteServiceInstances", "DescribeServiceEvent", "DescribeServiceLog",
    "DescribeServiceEndpoints", "ListGroups", "DescribeGroup", "DescribeGroupEndpoints", "ListResources",
    "DescribeResource", "ListResourceServices",
}


@pytest.fixture
def schema() -> dict:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_it_publishes_a_valid_openapi_3_document(schema):
    validate(schema)
    assert schema["openapi"].startswith("3.")


def test_it_documents_every_eas_operation(schema):
    operation_ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert EAS_OPERATIONS <= operation_ids


def test_it_serves_swagger_ui_from_local_assets(alice_api):
    page = alice_api.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "swagger-ui" in html
    assert not re.search(r"""(src|href)=["']https?://""", html), "Swagger UI must not load assets from the internet"
