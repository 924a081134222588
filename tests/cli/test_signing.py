"""The CLI's signatures agree with the official SDK's (the live-server tests show the server accepts them)."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from alibabacloud_tea_openapi.utils import Utils

from cli.signing import acs3_headers, canonical_query, eas_predict_headers

MOMENT = datetime(2026, 11, 21, 20, 55, 47, tzinfo=UTC)


@pytest.mark.parametrize("method, query, body", [
    ("GET", {"PageSize": "100", "Filter": "iris b~", "Label": '{"team": "ml"}'}, b""),
    ("PUT", {"UpdateType": "merge"}, b'{"metadata": {"instance": 3}}'),
])
def test_acs3_signature_is_the_sdks(method, query, body):
    headers = acs3_headers(method=method, host="127.0.0.1:8000", path="/api/v2/services/local/demo_iris",
                           query=query, body=body, content_type="application/json" if body else "",
                           access_key_id="FAKTEST", access_key_secret="s3cret", now=MOMENT, nonce="n0nce")
    ours = headers.pop("Authorization")
    request = SimpleNamespace(method=method, pathname="/api/v2/services/local/demo_iris", query=query, headers=headers)
    sdks = Utils.get_authorization(request, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"], "FAKTEST", "s3cret")
    assert ours == sdks
    assert headers["x-acs-date"] == "2026-11-21T20:55:47Z"
    assert canonical_query({"b": "x y", "a": "1"}) == "a=1&b=x%20y"


def test_eas_predict_signature_is_what_the_gateway_checks():
    auth = pytest.importorskip("contracts.auth", reason="the contracts package is not there")
    body = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
    headers = eas_predict_headers(token="t0ken", path="/api/predict/demo_iris", body=body,
                                  content_type="application/json")
    assert headers["Authorization"] == auth.sign("t0ken", body, "application/json", headers["Date"], "demo_iris")
    assert headers["Date"].endswith(" GMT")
