"""Refuse, before routing, the requests whose credentials' failure budget is spent.

A pure-ASGI check in front of FastAPI (see :class:`api.app.JpkiApp`): a caller who has used up
its failed authentications (jpki.access.auth_throttle) — by source address, or by the client id its
HTTP Basic credentials name — gets 429 problem+json with ``Retry-After`` for a header scan, a
base64 decode and two dictionary lookups in the cache of blocked keys every process shares
through the database: no routing, no dependency, no database read of its own, no HSM, no
thread — and the answer is held for ``refusal_delay`` (a second by default) before it is sent,
so that a flooding client, which sends again as soon as it is answered, sends one request a
second per connection instead of keeping the event loop busy. That keeps a flood of bad
credentials off everything OCSP and /healthz need. (A flood of *connections* is beyond what an
application process can refuse cheaply: a proxy or firewall in front limits those.)

These refusals are not written to the audit chain one by one, even on the relying-party routes
(api.rp_audit): that would let anyone without credentials append to the chain at line rate. The
failed checks that spent the budget are audited there as usual, and the log says when a budget
is spent (once per episode).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.types import Scope, Send

from api.deps import run_claimed
from jpki.access.auth_throttle import AuthThrottle
from jpki.access.clients import valid_client_id
from jpki.errors import AuthThrottled


def claimed_client_id(authorization: bytes) -> str | None:
    """The client id of HTTP Basic credentials, when it has the form of one."""
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    claimed = decoded.partition(b":")[0].decode("ascii", errors="replace")
    return claimed if valid_client_id(claimed) else None


class AuthGuard:
    def __init__(self, throttle: Callable[[], AuthThrottle]) -> None:
        self._throttle = throttle

    async def __call__(self, scope: Scope, send: Send) -> bool:
        """Answer 429 and return True when the request's budget is spent; else False."""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value
                break
        else:
            return False  # no credentials: nothing will be checked, nothing to throttle
        client = scope.get("client")
        throttle = self._throttle()
        # The blocked keys, as every process counted them (jpki.access.auth_throttle): read
        # again on a thread, not waited for, every POLL_SECONDS; waited for when this process
        # has not read them for STALE_SECONDS, so that it never admits on a cache that old.
        if throttle.stale():
            if throttle.claim_refresh():
                await run_in_threadpool(throttle.run_claimed_refresh)
        elif throttle.claim_refresh():
            run_claimed(throttle.run_claimed_refresh, throttle.release_claim)
        try:
            throttle.check(client[0] if client else None, claimed_client_id(authorization))
        except AuthThrottled as exc:
            if throttle.refusal_delay > 0:  # the tarpit (jpki.access.auth_throttle.AuthThrottle)
                await asyncio.sleep(throttle.refusal_delay)
            await _refuse(send, exc)
            return True
        return False


async def _refuse(send: Send, exc: AuthThrottled) -> None:
    # The shape api.problems gives every JpkiError (RFC 9457), and RFC 9110 §10.2.3.
    body = json.dumps({"type": f"urn:jpki:problem:{exc.code}", "title": exc.title,
                       "status": 429, "code": exc.code, "detail": exc.detail,
                       "context": {"retry_after": exc.retry_after}}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(exc.retry_after).encode())]})
    await send({"type": "http.response.body", "body": body})
