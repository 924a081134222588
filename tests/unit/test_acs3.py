"""contracts/acs3.py, which the CLI signs with and the API verifies with, against the official SDK's own signing
code (alibabacloud_tea_openapi), on the parts each side gives it."""

from types import SimpleNamespace

import pytest
from alibabacloud_tea_openapi.utils import Utils

from contracts import acs3

HEADERS = {"host": "ferry.example:8000", "x-acs-date": "2026-11-21T20:55:47Z", "x-acs-signature-nonce": "n0nce",
           "x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
           "x-acs-version": "2021-07-01"}


@pytest.mark.parametrize("query", [{}, {"PageSize": "100", "Filter": "iris b~"}])
def test_the_contract_signs_as_the_sdk_does(query):
    signed = sorted(HEADERS)
    canonical = acs3.canonical_request(
        method="get", path="/api/v2/services", query="&".join(f"{k}={v.replace(' ', '%20')}"
                                                              for k, v in sorted(query.items())),
        headers=[(name, HEADERS[name]) for name in signed], payload_hash=HEADERS["x-acs-content-sha256"])
    ours = acs3.authorization("FAKTEST", signed, acs3.signature(canonical, "s3cret"))
    request = SimpleNamespace(method="GET", pathname="/api/v2/services", query=query, headers=HEADERS)
    assert ours == Utils.get_authorization(request, acs3.ALGORITHM, HEADERS["x-acs-content-sha256"], "FAKTEST",
                                           "s3cret")


def test_a_changed_part_changes_the_signature():
    parts = {"method": "PUT", "path": "/api/v2/services/local/a", "query": "", "payload_hash": "0" * 64,
             "headers": [("host", "h"), ("x-acs-date", "2026-11-21T20:55:47Z")]}
    reference = acs3.signature(acs3.canonical_request(**parts), "s3cret")
    assert acs3.signature(acs3.canonical_request(**parts), "other") != reference
    for name, changed in [("method", "POST"), ("path", "/api/v2/services/local/b"), ("query", "a=1"),
                          ("payload_hash", "1" * 64), ("headers", [("host", "h2"), ("x-acs-date", "x")])]:
        assert acs3.signature(acs3.canonical_request(**{**parts, name: changed}), "s3cret") != reference, name
