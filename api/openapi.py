"""The OpenAPI document as clients see it: FastAPI's, completed with what FastAPI cannot know.

FastAPI describes each route from its signature. What it cannot see, this module adds:

- **Credentials.** Routes that authenticate (``api.deps.authenticate`` among their dependencies)
  declare the ``httpBasic`` security scheme (RFC 7617), so Swagger UI at ``/docs`` can authorise
  and generated clients send it — and the answers authentication adds: 401 with
  ``WWW-Authenticate``, 403 (role, scope, standing), 429 (failure budget spent, api.auth_guard;
  a relying party over its rate) and 503 (the legacy verifier is full), both with ``Retry-After``.
- **Refusals as problem details.** Every 4xx/5xx answer is RFC 9457 ``application/problem+json``
  (api.problems), described by one ``ProblemDetails`` component — FastAPI's default 422
  ``HTTPValidationError`` is replaced by it, since that is not what the app sends. A route that
  takes a JSON body can also answer 400 (not JSON), 413 (over the body limit, api.limits) and
  415 (not ``application/json``); routes without credentials that do work for their caller are
  rate-limited per source (429, api.anonymous). The outcomes of the domain a route can meet —
  404, 409, a 400 or 422 of its own — are declared on the route with :func:`problems`.
- **OCSP.** ``/ocsp`` is served before FastAPI's routing (api.ocsp_http), so its two operations
  are described here by hand.

``python -m api.openapi`` prints the document; it is committed as docs/openapi.json, and a test
holds the two equal, so that a change of the API shows in review.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from api.anonymous import ROUTES as ANONYMOUS_ROUTES
from api.deps import authenticate
from api.problems import PROBLEM_JSON
from jpki.revocation.ocsp import MAX_REQUEST_BYTES

if TYPE_CHECKING:
    from fastapi import FastAPI

SECURITY_SCHEME = "httpBasic"
PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}

# What api.problems (and the pure-ASGI guards, which write the same shape) sends: RFC 9457 §3.1
# members, our stable ``code``, and the extension members ``context`` and ``errors`` (§3.2).
PROBLEM_DETAILS: dict[str, Any] = {
    "title": "ProblemDetails",
    "description": "An RFC 9457 problem document. `code` is stable: clients branch on it, "
                   "not on `title` or `detail`, which are for people.",
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string", "pattern": r"^urn:jpki:problem:[a-z0-9_.]+$",
                 "description": "`urn:jpki:problem:` and the code"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "code": {"type": "string", "pattern": r"^[a-z0-9_.]+$",
                 "examples": ["resident.not_found", "auth.invalid_credentials"]},
        "detail": {"type": "string"},
        "context": {"type": "object", "description": "Identifiers and limits, never personal "
                                                    "data (e.g. `field`, `retry_after`)"},
        "errors": {
            "type": "array",
            "description": "With `request.invalid`: where the request breaks the schema, and "
                           "which rule (the values are never echoed)",
            "items": {"type": "object", "required": ["loc", "msg", "type"], "properties": {
                "loc": {"type": "array", "items": {"type": "string"}},
                "msg": {"type": "string"}, "type": {"type": "string"}}},
        },
    },
}

RETRY_AFTER = {"description": "Seconds to wait before trying again (RFC 9110 §10.2.3)",
               "schema": {"type": "integer", "minimum": 0}}
WWW_AUTHENTICATE = {"description": 'HTTP Basic challenge: `Basic realm="jpki"` (RFC 7617)',
                    "schema": {"type": "string"}}
ALLOW = {"description": "The methods this path takes (RFC 9110 §10.2.1)",
         "schema": {"type": "string"}}

DESCRIPTIONS: Mapping[int, str] = {
    400: "The request is malformed, or a value breaks a rule the schema cannot express "
         "(`code` names it, e.g. `serial.invalid`, `cms.invalid`, `request.malformed`)",
    401: "No valid credentials: HTTP Basic with a client id and secret",
    403: "The client's role, scope or standing does not allow this call",
    404: "No such resource",
    405: "The path does not take this method",
    409: "The request conflicts with the current state",
    413: "The request is over the size limit",
    414: "The request URI is too long",
    415: "The request body is not of the media type this operation takes",
    422: "The request does not match this schema (`request.invalid`, with `errors`), or a "
         "policy refuses it (`code` names the policy)",
    429: "Too many requests from this caller; try again after `Retry-After` seconds",
    503: "Temporarily unavailable; `Retry-After` says when to retry, when known",
}
# The standard problem responses are components (``#/components/responses/NotFound``), so that
# each operation lists its refusals in a line each; a route's own wording stays inline.
NAMES: Mapping[int, str] = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 409: "Conflict", 413: "ContentTooLarge", 414: "UriTooLong",
    415: "UnsupportedMediaType", 422: "UnprocessableContent", 429: "TooManyRequests",
    503: "ServiceUnavailable",
}
HEADERS: Mapping[int, Mapping[str, Any]] = {
    401: {"WWW-Authenticate": {**WWW_AUTHENTICATE, "required": True}},
    405: {"Allow": {**ALLOW, "required": True}},
    429: {"Retry-After": {**RETRY_AFTER, "required": True}},
    503: {"Retry-After": RETRY_AFTER},
}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """One problem+json response, as FastAPI's ``responses=`` and the document take it."""
    response: dict[str, Any] = {"description": description or DESCRIPTIONS[status],
                                "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}
    if status in HEADERS:
        response["headers"] = dict(HEADERS[status])
    return response


def problems(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """The problem responses a route declares (``responses=problems(404, 409)``): the outcomes
    of its domain. ``described`` words one more precisely: ``s422="…"``."""
    return {status: problem_response(status, described.get(f"s{status}"))
            for status in statuses}


# --- the document -----------------------------------------------------------------------------


def _depends_on(dependant: Any, call: object) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def _add(operation: dict[str, Any], *statuses: int) -> None:
    responses = operation.setdefault("responses", {})
    for status in statuses:
        responses.setdefault(str(status), problem_response(status))


def _by_reference(responses: dict[str, Any]) -> None:
    for status, response in responses.items():
        if status.isdigit() and int(status) in NAMES and response == problem_response(int(status)):
            responses[status] = {"$ref": f"#/components/responses/{NAMES[int(status)]}"}


def _complete_operation(operation: dict[str, Any], route: Any, method: str) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    # FastAPI's own 422 describes its HTTPValidationError; api.problems answers problem+json.
    if "422" in responses and PROBLEM_JSON not in responses["422"].get("content", {}):
        responses["422"] = problem_response(422)
    if route.body_field is not None:
        _add(operation, 400, 413, 415, 422)
    if _depends_on(route.dependant, authenticate):
        operation["security"] = [{SECURITY_SCHEME: []}]
        _add(operation, 401, 403, 429, 503)
    if (method, route.path_format) in ANONYMOUS_ROUTES:
        _add(operation, 429)
    _by_reference(responses)
    # Status codes in order, as a reader looks for them.
    operation["responses"] = dict(sorted(responses.items()))


def _ocsp_paths() -> dict[str, Any]:
    """``/ocsp`` (api.ocsp_http, RFC 6960 Appendix A, RFC 5019 §5), served outside the router."""
    answer = {
        "description": "An OCSP response (RFC 6960 §4.2). Whatever the request, once HTTP "
                       "accepted it: a request that is not a DER OCSPRequest is answered "
                       "`malformedRequest`, as RFC 6960 §2.3 prescribes, with `no-store`. A "
                       "pre-signed answer carries `Cache-Control: max-age` up to nextUpdate, "
                       "`ETag`, `Last-Modified` and `Expires` (RFC 5019 §6.2); an answer to a "
                       "request with a nonce is signed live and `no-store`.",
        "headers": {"Cache-Control": {"schema": {"type": "string"}, "required": True}},
        "content": {"application/ocsp-response": {
            "schema": {"type": "string", "contentMediaType": "application/ocsp-response"}}},
    }
    not_allowed = problem_response(405)
    post = {
        "tags": ["revocation"],
        "summary": "OCSP request (POST)",
        "operationId": "ocsp_post",
        "description": "RFC 6960 Appendix A.1: a DER OCSPRequest as the body. Anonymous, and "
                       "answered from responses signed ahead of time whenever it can be.",
        "requestBody": {"required": True, "content": {"application/ocsp-request": {
            "schema": {"type": "string", "format": "binary", "maxLength": MAX_REQUEST_BYTES,
                       "contentMediaType": "application/ocsp-request"}}}},
        "responses": {
            "200": answer,
            "405": not_allowed,
            "413": problem_response(413, f"The request is over {MAX_REQUEST_BYTES} bytes"),
            "415": problem_response(415, "The body is not `application/ocsp-request`"),
        },
    }
    get = {
        "tags": ["revocation"],
        "summary": "OCSP request (GET)",
        "operationId": "ocsp_get",
        "description": "RFC 6960 Appendix A.1, RFC 5019 §5: the base64 of a DER OCSPRequest, "
                       "URL-encoded, as the last path segment; what an HTTP cache can keep.",
        "parameters": [{
            "name": "request", "in": "path", "required": True,
            "description": "base64 (RFC 4648 §4) of a DER OCSPRequest, URL-encoded",
            # A third of the longest path the responder takes (api.ocsp_http.MAX_GET_PATH): no
            # request this long is refused 414, even with every character percent-encoded. RFC
            # 5019 §5 sends requests under 255 bytes (340 characters) by GET.
            "schema": {"type": "string", "pattern": r"^[A-Za-z0-9+/]*={0,2}$",
                       "maxLength": MAX_REQUEST_BYTES // 3,
                       "contentEncoding": "base64",
                       "contentMediaType": "application/ocsp-request"},
        }],
        "responses": {
            "200": answer,
            "405": not_allowed,
            "414": problem_response(414, "The request is longer than the largest OCSP "
                                         "request taken"),
        },
    }
    return {"/ocsp": {"post": post}, "/ocsp/{request}": {"get": get}}


def _api_routes(app: FastAPI) -> Iterable[Any]:
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            yield context


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, complete."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes, openapi_version=app.openapi_version)
    paths: dict[str, Any] = doc.setdefault("paths", {})
    for route in _api_routes(app):
        for method in sorted(route.methods or ()):
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is not None:
                _complete_operation(operation, route, method)
    ocsp = _ocsp_paths()
    for item in ocsp.values():
        for operation in item.values():
            _by_reference(operation["responses"])
    paths.update(ocsp)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["ProblemDetails"] = PROBLEM_DETAILS
    components["schemas"] = dict(sorted(schemas.items()))
    components["responses"] = {NAMES[status]: problem_response(status) for status in sorted(NAMES)}
    components["securitySchemes"] = {SECURITY_SCHEME: {
        "type": "http", "scheme": "basic",
        "description": "The client id and secret `jpki client add` (or `jpki rp add`) printed"}}
    return doc


def dumps(doc: Mapping[str, Any]) -> str:
    """The document as committed in docs/openapi.json."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    from api.app import create_app
    from jpki.settings import Settings

    sys.stdout.write(dumps(create_app(Settings()).openapi()))


if __name__ == "__main__":
    main()
