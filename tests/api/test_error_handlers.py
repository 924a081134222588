"""Django's error handlers answer in EAS's JSON shape under /api/ and keep HTML pages for the console.

A view that fails with a bug is added to Ferry's own URL conf (with its handlers, from config.urls) for
these tests only."""

import json

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import path

from config import urls as ferry_urls
from config.urls import handler400, handler403, handler404, handler500  # noqa: F401 -- this URL conf's handlers


def _bug(request):
    raise RuntimeError("a bug")


def _fine(request):
    return HttpResponse("fine")


urlpatterns = [path("api/v2/test-bug", _bug), path("test-bug", _bug), path("api/v2/test-fine", _fine),
               *ferry_urls.urlpatterns]


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


@pytest.mark.urls(__name__)
def test_it_answers_a_bug_under_the_api_with_a_json_500_carrying_the_request_id(client, db):
    response = client.get("/api/v2/test-bug")
    body = json.loads(response.content)
    assert response.status_code == 500 and body["Code"] == "InternalError"
    assert body["RequestId"] == response["x-acs-request-id"] and body["RequestId"] in body["Message"]


@pytest.mark.urls(__name__)
def test_it_answers_a_bug_in_the_console_with_an_html_page(client, db):
    response = client.get("/test-bug")
    assert response.status_code == 500 and response["Content-Type"].startswith("text/html")


@pytest.mark.urls(__name__)
def test_it_refuses_a_declared_body_over_the_limit_before_the_view_reads_it(client, db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = client.post("/api/v2/test-fine", data=b"x" * 101, content_type="application/octet-stream")
    assert response.status_code == 413 and json.loads(response.content)["Code"] == "RequestEntityTooLarge"
    assert client.post("/api/v2/test-fine", data=b"x" * 100, content_type="application/octet-stream").status_code == 200
