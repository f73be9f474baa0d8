"""The OpenAPI document: committed, complete, and what the app serves.

docs/openapi.json is the document the app serves at /openapi.json, so that a change of the API is
a change of that file and shows in review (regenerate it with
``python -m api.openapi > docs/openapi.json``). What the document says is held against the API
itself by tests/api/test_openapi_contract.py; here, that it says everything a client needs:
the credentials each operation takes, and every refusal as RFC 9457 problem details.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.openapi import dumps
from jpki.settings import Settings
from tests.api.harness import Api

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REGENERATE = "python -m api.openapi > docs/openapi.json"
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    """The document as the app serves it (no lifespan, no services: nothing is called)."""
    response = TestClient(create_app(Settings())).get("/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in document["paths"].items()
            for method, op in item.items() if method in METHODS]


def resolved(document: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """A response, or the component it refers to (``#/components/responses/…``)."""
    if "$ref" not in response:
        return response
    found: dict[str, Any] = document["components"]["responses"][response["$ref"].split("/")[-1]]
    return found


def test_the_committed_document_is_the_served_one(served: dict[str, Any]) -> None:
    committed = DOCUMENT.read_text(encoding="utf-8")
    assert json.loads(committed) == served, f"docs/openapi.json is stale: {REGENERATE}"
    assert committed == dumps(served), f"docs/openapi.json is not as generated: {REGENERATE}"


def test_operations_that_take_credentials_say_so(served: dict[str, Any]) -> None:
    scheme = served["components"]["securitySchemes"]["httpBasic"]
    assert scheme == {"type": "http", "scheme": "basic", "description": scheme["description"]}
    authenticated = {(m, p) for m, p, op in operations(served) if "security" in op}
    # Anonymous: what certificates point at (CA certificates, CRLs, OCSP), probes, and the
    # holder's signed requests (the signature is the authorisation).
    assert {(m, p) for m, p, _ in operations(served)} - authenticated == {
        ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/ca/{ca}/g{generation}.cer"),
        ("GET", "/crl/{ca}/g{generation}/{name}"), ("POST", "/ocsp"), ("GET", "/ocsp/{request}"),
        ("POST", "/v1/mobile/challenges"), ("POST", "/v1/mobile/applications"),
        ("POST", "/v1/mobile/revocations"), ("POST", "/v1/mobile/suspension-lifts"),
        ("POST", "/v1/mobile/check-ins"), ("POST", "/v1/consents/withdrawals")}
    for method, path, op in operations(served):
        if (method, path) in authenticated:
            assert op["security"] == [{"httpBasic": []}], (method, path)
            assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
            unauthorized = resolved(served, op["responses"]["401"])
            assert unauthorized["headers"]["WWW-Authenticate"]["required"]


def test_every_refusal_is_a_documented_problem(served: dict[str, Any]) -> None:
    text = json.dumps(served)
    assert "HTTPValidationError" not in text and '"ValidationError"' not in text
    for method, path, op in operations(served):
        for status, response in op["responses"].items():
            if int(status) < 400 or (path, status) == ("/readyz", "503"):
                continue  # /readyz answers 503 with the failing checks, as load balancers read
            response = resolved(served, response)
            assert response["content"] == PROBLEM, (method, path, status)
            if status == "429":
                assert response["headers"]["Retry-After"]["required"], (method, path)
        if "requestBody" in op and path not in ("/ocsp",):
            assert {"400", "413", "415", "422"} <= set(op["responses"]), (method, path)


def test_the_ocsp_responder_is_documented(served: dict[str, Any]) -> None:
    post, get = served["paths"]["/ocsp"]["post"], served["paths"]["/ocsp/{request}"]["get"]
    assert set(post["requestBody"]["content"]) == {"application/ocsp-request"}
    assert set(post["responses"]) == {"200", "405", "413", "415"}
    assert set(get["responses"]) == {"200", "405", "414"}
    for op in (post, get):
        assert set(op["responses"]["200"]["content"]) == {"application/ocsp-response"}
        assert resolved(served, op["responses"]["405"])["headers"]["Allow"]["required"]
    assert set(served["paths"]["/ocsp"]) == {"post"}
    assert set(served["paths"]["/ocsp/{request}"]) == {"get"}


@pytest.mark.hsm
def test_a_405_names_every_method_of_the_path(api: Api) -> None:
    for method, path, allowed in (
            ("OPTIONS", "/v1/operators/relying-parties", "GET, POST"),
            ("DELETE", "/v1/operators/residents", "POST"),
            ("PUT", "/ocsp", "POST"),
            ("GET", "/ocsp", "POST"),
            ("POST", "/ocsp/MEMw", "GET"),
            ("DELETE", "/ocsp/MEMw", "GET")):
        response = api.http.request(method, path, headers=api.op)
        api.problem(response, 405, "request.method_not_allowed")
        assert response.headers["allow"] == allowed, (method, path)
