"""Refusals on the relying-party routes are audited (architecture §6: "every call is
… audited"), whatever refused them: the authentication, the role, the relying party's status, its
rate limit, the scope, the body's schema, the body-size guard, or the service.

A pure ASGI middleware wraps only those routes. It holds back a 4xx answer, writes one
``rp.refused`` record — in a unit of work of its own, which commits the record and nothing else
(jpki.relying_parties.service.RelyingPartyService.record_refusal) — and then sends the answer
unchanged.
What it records is identifiers and codes only: the caller (``client:<id>`` once authenticated,
else ``anonymous`` with the claimed client id when it has the form of one), the route (one of ours,
or ``other`` — a path is caller-chosen text), the status and problem ``code``, the relying party
and the purpose when they are known and declared. Never the body: it may hold anything.

Successful calls are audited by the services themselves, inside the transaction that reads what
they disclose.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.composition import Services

log = logging.getLogger("jpki.api")

ROUTES = frozenset({("GET", "/v1/rp/ping"), ("POST", "/v1/status"), ("POST", "/v1/linkage"),
                    ("POST", "/v1/basic4"), ("POST", "/v1/consents/withdrawals")})
PREFIXES = ("/v1/rp/", "/v1/status", "/v1/linkage", "/v1/basic4", "/v1/consents")


def claimed_client(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() != b"basic":
                return None
            try:
                decoded = base64.b64decode(token.strip(), validate=True).decode("ascii")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
            return decoded.partition(":")[0]
    return None


def problem_code(body: bytes) -> str:
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return "unknown"
    return code if isinstance(code, str) else "unknown"


class RefusalAudit:
    def __init__(self, app: ASGIApp, services: Callable[[], Services]) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(PREFIXES):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def guarded_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                if int(message["status"]) in range(400, 500):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(chunks)
                await self._record(scope, int(held["status"]), body)
                start, held = held, None
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, guarded_send)

    async def _record(self, scope: Scope, status: int, body: bytes) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        principal = state.get("principal")
        method, path = str(scope.get("method", "")), str(scope["path"])
        route = f"{method} {path}" if (method, path) in ROUTES else "other"
        if principal is not None:
            actor, claimed = principal.actor, None
            relying_party = state.get("relying_party") or principal.relying_party
        else:
            actor, claimed, relying_party = "anonymous", claimed_client(scope), None
        try:
            await run_in_threadpool(
                self.services().relying_parties.record_refusal, actor=actor, route=route,
                status=status, code=problem_code(body), relying_party=relying_party,
                purpose=state.get("purpose"), claimed_client=claimed)
        except Exception as exc:  # the refusal stands; report the type only
            log.error("could not audit a refused relying-party call: %s", type(exc).__name__)
