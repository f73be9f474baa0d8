"""One JSON log line and the HTTP metrics for every request, under a request id.

The request id is the client's ``X-Request-ID`` when it is well formed (jpki.correlation: up to
64 characters of a safe alphabet), else a new random one; it is bound for the whole request — so
the audit records the request causes carry it (jpki.audit) and every log line written meanwhile
names it (api.logs) — and returned in the response's ``X-Request-ID``.

The line says what an operator needs and nothing a resident could be recognised by: method, the
route *template* (``/v1/operators/residents/{resident_id}``, never the path as sent, nor its
query), status, duration, request id, and the authenticated client (``client:<id>``) if any.
Never a body.

It wraps the whole FastAPI application, error handling included (api.app.JpkiApp), so that a 500
carries the id too. The OCSP responder is not wrapped: it is counted and timed by
api.metrics.MeteredOcsp, but a line per OCSP request would halve its throughput and record
which certificates each client asked about (``jpki serve --access-log`` turns uvicorn's access
log on for that).
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import metrics
from jpki.correlation import acceptable, bound, new_request_id

HEADER = b"x-request-id"
UNMATCHED = "unmatched"
log = logging.getLogger("jpki.request")


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            text = value.decode("latin-1")
            return text if acceptable(text) else None
    return None


def route_template(scope: Scope) -> str:
    """The template of the route that answered (set by Starlette's router), or ``unmatched``:
    a path nobody routes is caller-chosen text."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def _client(scope: Scope) -> str | None:
    state: dict[str, Any] = scope.get("state") or {}
    principal = state.get("principal")
    actor = getattr(principal, "actor", None)
    return actor if isinstance(actor, str) else None


async def observe_request(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    request_id = incoming_request_id(scope) or new_request_id()
    header = (HEADER, request_id.encode("ascii"))
    started = perf_counter()
    status = 500  # if the application raises before it answers

    async def send_with_id(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    with bound(request_id):
        try:
            await app(scope, receive, send_with_id)
        finally:
            seconds = perf_counter() - started
            method, route = str(scope.get("method", "")), route_template(scope)
            metrics.http_request(method, route, status, seconds)
            if log.isEnabledFor(logging.INFO):
                log.info("request", extra={"request_id": request_id, "fields": {
                    "event": "request", "method": method, "route": route, "status": status,
                    "duration_ms": round(seconds * 1000, 3), "client": _client(scope)}})
