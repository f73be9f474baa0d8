"""RFC 9457 problem details: the only place where domain errors become HTTP status codes."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from api.limits import BodyTooLarge
from jpki.errors import Category, JpkiError, RetryLater

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("jpki.api")

STATUS = {
    Category.INVALID_INPUT: 400,
    Category.NOT_FOUND: 404,
    Category.CONFLICT: 409,
    Category.POLICY: 422,
    Category.UNAUTHENTICATED: 401,
    Category.FORBIDDEN: 403,
    Category.TOO_LARGE: 413,
    Category.RATE_LIMITED: 429,
    Category.UNAVAILABLE: 503,
    Category.INTERNAL: 500,
}


def problem(status: int, code: str, title: str, detail: str | None = None,
            headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, code, title, detail, **extra), status_code=status,
                        media_type=PROBLEM_JSON, headers=headers)


def problem_body(status: int, code: str, title: str, detail: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": f"urn:jpki:problem:{code}", "title": title,
                            "status": status, "code": code}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def error_body(exc: JpkiError) -> dict[str, Any]:
    """The problem document of ``exc``, as :func:`from_error` answers it, for one item of a
    batch's answer (api.routers.certificates)."""
    return problem_body(STATUS[exc.category], exc.code, exc.title, exc.detail,
                        context=exc.context or None)


def from_error(exc: JpkiError) -> JSONResponse:
    status = STATUS[exc.category]
    headers = {"WWW-Authenticate": 'Basic realm="jpki"'} if status == 401 else None
    if status == 429 or (status == 503 and "retry_after" in exc.context):
        # RFC 9110 §10.2.3, §15.6.4: how long to wait, in seconds (with 429, and with 503 where
        # it is known).
        headers = {"Retry-After": str(exc.context.get("retry_after") or 1)}
    if status >= 500 and not isinstance(exc, RetryLater):  # a full queue is load, not a fault
        log.error("request failed: %r", exc)
    return problem(status, exc.code, exc.title, exc.detail, headers=headers,
                   context=exc.context or None)


def _not_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return not (media_type == "application/json" or
                (media_type.startswith("application/") and media_type.endswith("+json")))


def install(app: FastAPI) -> None:
    @app.exception_handler(JpkiError)
    async def _jpki(_: Request, exc: JpkiError) -> JSONResponse:
        return from_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem(400, "request.malformed", "The request body could not be parsed",
                           "the body is not valid JSON")
        if _not_json(request) and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
            # FastAPI reads a body without a JSON content type as bytes, which then "is not an
            # object": say what is really wrong.
            return problem(415, "request.unsupported_media_type",
                           "The request body must be JSON", "send Content-Type: application/json")
        # Never echo the input back: it may hold personal data. Location and rule only.
        return problem(422, "request.invalid", "The request is invalid",
                       "the request does not match the schema",
                       errors=[{"loc": [str(p) for p in e.get("loc", ())],
                                "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                               for e in errors])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "request.method_not_allowed",
                 415: "request.unsupported_media_type", 413: "request.too_large"}
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot read at all (e.g. JSON that is not UTF-8).
            return problem(400, "request.malformed", "The request body could not be parsed",
                           "the body could not be decoded", headers=exc.headers)
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only; RFC 9110
            # §15.5.6 wants every method the resource takes.
            headers = {**(headers or {}), "Allow": ", ".join(_allowed(request))}
        code = codes.get(exc.status_code, f"http.{exc.status_code}")
        return problem(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, BodyTooLarge):  # a chunked body that outgrew the limit while read
            return problem(413, "request.too_large", "The request is too large")
        # Only the type name and where: the route's path template, not the path as sent. An
        # exception's text, like the path, may carry request data (architecture §9.7).
        log.error("unexpected %s in %s %s", type(exc).__name__, request.method,
                  _route_template(request), exc_info=False)
        return problem(500, "internal", "Internal error")


def _allowed(request: Request) -> list[str]:
    """The methods of every route whose path matches the request's."""
    path = request.scope["path"]
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.methods and route.path and _path_regex(route.path).match(path):
            methods |= route.methods
    return sorted(methods)


@functools.lru_cache(maxsize=256)
def _path_regex(template: str) -> re.Pattern[str]:
    regex, _, _ = compile_path(template)
    return regex


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else "(no route)"
