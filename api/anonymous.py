"""Requests made without credentials — a phone asking for a challenge, a holder's signed request
or withdrawal — are rate-limited per source address before anything is done for them: before
the body is read or parsed, before a refusal is audited.

The source is the client address uvicorn reports (behind a proxy, the address it forwarded, when
the proxy is one of uvicorn's ``--forwarded-allow-ips``). An IPv6 source is its /64: one
subscriber's network, in which an address costs nothing to change (RFC 6177). The buckets are
jpki.rate_limits', shared by every process through the database (the services' ``anonymous``):
a token comes from the block this process holds for the source, in the event loop; when that is
spent, a new block is leased on a thread. A refusal answers 429 with Retry-After.

A request refused here is not audited, on the relying-party routes either (api.rp_audit): that
would let anyone append to the audit chain, and sign in the HSM, as fast as they can send.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import from_error
from jpki.rate_limits import RateLimited, TokenBuckets

# (method, path) of every route that takes no credentials and does work for its caller. The
# public documents (CA certificates, CRLs, OCSP) are meant to be fetched by anyone, and cached.
ROUTES = frozenset(("POST", path) for path in (
    "/v1/mobile/challenges", "/v1/mobile/applications", "/v1/mobile/revocations",
    "/v1/mobile/suspension-lifts", "/v1/mobile/check-ins", "/v1/consents/withdrawals"))


def source(client: Any) -> str:
    """The source of a request from ``client`` (the ASGI scope's (host, port) or None)."""
    host = str(client[0]) if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64] or "unknown"  # a test client, a Unix socket
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _source(request: Request) -> str:
    return source(request.scope.get("client"))


# The caller's source, for a route that bounds what one source may hold (the challenges).
RequestSource = Annotated[str, Depends(_source)]


class AnonymousLimit:
    """A pure ASGI middleware taking one token of the source's bucket for each request to
    :data:`ROUTES`, or answering 429 (``request.rate_limited``) without calling the app."""

    def __init__(self, app: ASGIApp, buckets: Callable[[], TokenBuckets]) -> None:
        self.app = app
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope.get("method"), scope.get("path")) in ROUTES:
            buckets, key = self.buckets(), source(scope.get("client"))
            try:
                if not buckets.try_take(key):
                    await run_in_threadpool(buckets.take, key)  # a lease: a database write
            except RateLimited as exc:
                await from_error(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)
