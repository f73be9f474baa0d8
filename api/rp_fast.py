"""The relying parties' two hot calls — ``POST /v1/status``, and ``POST /v1/basic4`` under a
standing consent — answered before FastAPI's routing, when nothing about the call needs it.

Why: a status call spent about as much of the event loop's time in the framework — routing over
every route of the app, the middleware layers, dependency solving, reading and validating the
body — as in its own work (docs/performance.md, relying parties). The OCSP responder is served
before routing for the same reason (api.ocsp_http).

What stays the same is everything a caller or an operator can observe. The request is still
logged and measured under its request id and route template (api.request_log), still refused
before anything else when its credentials' failure budget is spent (api.auth_guard), still
answered by the same services with the same bytes, and its refusals are still audited by the
same middleware (api.rp_audit.RefusalAudit) with the same problem documents
(api.problems.from_error).

How it stays the same: this path takes only a call it can answer exactly as the route would,
and hands everything else to the regular app — with the body it has read replayed — *before*
doing anything with a side effect:

1. a JSON body (application/json or ``+json``) within the size limit (else api.limits.BodyLimit
   decides, on the regular path);
2. the route's own request model validates it (else FastAPI's validation decides the answer);
3. HTTP Basic credentials that memory alone accepts (jpki.access.clients.ClientService.remembered),
   with the relying party's standing kept alongside them — the regular path's step 3 of
   api.deps.authenticate, whose step 2 (the failure budgets) api.auth_guard has just done for
   this request; anything else (not remembered, a suspended client, a legacy hash, a
   malformed header) goes to the regular path, which checks it, spends the failure budgets and
   audits a refusal as it always does;
4. for basic 4, a ``consent_id`` and no new consent (a new consent's signature is verified on a
   thread, on the regular path).

From admission on (the relying party's standing, its rate, the call's scope — which takes a
token of its bucket) the call is this path's: a refusal from there on is rendered and audited
here, exactly as the route's exception handler and RefusalAudit would. The token comes from the
block of the relying party's shared bucket this process holds (jpki.rate_limits), in the event
loop; once per block, admission runs on a thread, where the next block is leased from the
database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import rp_calls
from api.composition import Services
from api.deps import basic_credentials, run_claimed
from api.problems import from_error, problem
from api.rp_audit import RefusalAudit
from api.schemas import Basic4In, StatusIn
from jpki.access.authz import Operation
from jpki.access.clients import valid_client_id
from jpki.errors import JpkiError
from jpki.rate_limits import LeaseNeeded

log = logging.getLogger("jpki.api")

STATUS, BASIC4 = "/v1/status", "/v1/basic4"
PATHS = frozenset((STATUS, BASIC4))
_CALL = "jpki.rp_fast.call"  # the scope key the admitted call travels under to the answer


class _Fallback(Exception):
    """This call goes the regular way."""


def is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """The content type FastAPI reads as JSON (api.problems._not_json is its negation)."""
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (media.startswith(b"application/")
                                                     and media.endswith(b"+json"))
    return False


def _replayed(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` giving back ``messages`` first: the regular path reads the body this path
    has already read."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class RpFastPath:
    def __init__(self, fallback: ASGIApp, services: Callable[[], Services], max_body_bytes: int,
                 routes: list[Any]) -> None:
        self.fallback = fallback
        self.services = services
        self.max_body_bytes = max_body_bytes
        # The routes' own objects: the request log names their templates (api.request_log).
        self.routes = {context.route.path: context.route
                       for context in iter_route_contexts(routes)
                       if isinstance(context.route, APIRoute) and context.route.path in PATHS
                       and "POST" in (context.route.methods or ())}
        if set(self.routes) != PATHS:
            raise RuntimeError("the relying parties' routes are not all in the app")
        self.answer = RefusalAudit(self._answer, services)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        messages: list[Message] = []
        try:
            body = await self._body(scope, receive, messages)
            await self._admit(scope, body)
        except _Fallback:
            await self.fallback(scope, _replayed(messages, receive), send)
            return
        await self.answer(scope, receive, send)

    async def _body(self, scope: Scope, receive: Receive, messages: list[Message]) -> bytes:
        headers = scope["headers"]
        if not is_json(headers):
            raise _Fallback
        for name, value in headers:
            if name == b"content-length" and (not value.isdigit()
                                              or int(value) > self.max_body_bytes):
                raise _Fallback
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away
                raise _Fallback
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _Fallback
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _admit(self, scope: Scope, body: bytes) -> None:
        """Steps 1-4 of the module docstring, then admission: the call, under the scope's
        ``_CALL`` key, or a refusal rendered by :meth:`_answer`."""
        path = scope["path"]
        request: StatusIn | Basic4In
        try:
            request = StatusIn.model_validate_json(body) if path == STATUS else \
                Basic4In.model_validate_json(body)
        except ValidationError:
            raise _Fallback from None
        if isinstance(request, Basic4In) and (request.consent is not None
                                              or request.consent_id is None):
            raise _Fallback
        authorization = next((v for n, v in scope["headers"] if n == b"authorization"), None)
        services = self.services()
        clients = services.clients
        try:
            client_id, secret = basic_credentials(
                authorization.decode("latin-1") if authorization is not None else None)
            verdict = clients.remembered(client_id, secret) if valid_client_id(client_id) \
                else None
        except JpkiError:
            raise _Fallback from None
        if verdict is None or verdict.standing is None:
            raise _Fallback
        if clients.kept.claim_poll():  # as api.deps.authenticate does
            run_claimed(clients.kept.run_claimed_poll, clients.kept.release_claim)
        state = scope.setdefault("state", {})
        state["principal"] = verdict.principal  # as request.state, for the log and the audit
        scope["route"] = self.routes[path]
        operation = Operation.RP_STATUS if path == STATUS else Operation.RP_BASIC4
        admit = services.relying_parties.admit
        try:
            try:
                ctx = admit(verdict.principal, operation, verdict.standing, lease=False)
            except LeaseNeeded:  # this process's block of tokens is spent: a lease, on a thread
                ctx = await run_in_threadpool(admit, verdict.principal, operation,
                                              verdict.standing)
        except JpkiError as exc:
            scope[_CALL] = exc
            return
        state["relying_party"] = ctx.rp_id
        if request.purpose in ctx.purposes:  # as the route's _purpose: a declared code only
            state["purpose"] = request.purpose
        scope[_CALL] = (ctx, request)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = scope.pop(_CALL)
        try:
            if isinstance(call, JpkiError):
                raise call
            ctx, request = call
            services = self.services()
            if isinstance(request, StatusIn):
                answer = await rp_calls.status(services, ctx, request.purpose, request.serials)
                content = rp_calls.status_json(answer)
            else:
                assert request.consent_id is not None  # step 4
                disclosed = await rp_calls.basic4(services, ctx, request.purpose, None,
                                                  request.consent_id)
                content = rp_calls.basic4_out(disclosed).model_dump_json(
                    exclude_none=True).encode("utf-8")
        except JpkiError as exc:
            await from_error(exc)(scope, receive, send)
            return
        except Exception as exc:  # as api.problems' handler of the unexpected: the type only
            log.error("unexpected %s in POST %s", type(exc).__name__, scope["path"],
                      exc_info=False)
            await problem(500, "internal", "Internal error")(scope, receive, send)
            return
        await _send_json(send, content)


async def _send_json(send: Send, content: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(content)).encode("ascii")),
                            (b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": content})

