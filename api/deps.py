"""Request dependencies: the services, and who is calling (authenticated on every request).

Authentication is an async dependency on purpose. FastAPI runs a sync dependency on Starlette's
thread pool — the one OCSP cache misses, /healthz and every sync route use — so a flood of bad
credentials checked there would starve them (each legacy Argon2id check held a thread, several
cores and 64 MiB for a tenth of a second or more). Here:

1. the Basic credentials are parsed and the client id checked against its form in the event
   loop; an id that cannot exist is refused at once (401) and never reaches the database;
2. the failure budgets of the address and the id are checked (jpki.access.auth_throttle; requests
whose
   budget is spent are already refused before routing, api.auth_guard);
3. a client seen recently, with a secret verified recently, is decided from memory in the event
   loop (jpki.access.clients.ClientService.remembered: the credentials kept in step with the store
   by
   a change feed, jpki.access.kept_clients) — no thread, no read, no HSM; when the feed's poll is
   due, it is started on a thread and not waited for;
4. otherwise the cheap check — the kept row or one read of it (with its relying party's
   standing, which the request's admission then uses) and one HMAC — runs on worker threads
   under a capacity limiter of its own (``JPKI_AUTH_CONCURRENCY``), so it never holds a token
   of the default pool;
5. a legacy hash goes to the bounded Argon2 verifier's own threads (jpki.access.client_secrets) and
is
   awaited there; when that verifier is full the answer is 503 with Retry-After;
6. a failed check spends the address's and the id's budgets, in the database every node shares
   (on a thread).

Memory never decides a refusal for a wrong secret: only a success (or a suspended client, from
credentials kept fresh) is decided there, and everything else goes through the check, so that
failures are budgeted and cost the same for unknown ids as for known ones.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import weakref
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request

from api.composition import Services
from jpki.access.authz import Grant, Operation, authorize
from jpki.access.clients import Authenticated, LegacyCheck, valid_client_id
from jpki.access.principals import Principal
from jpki.errors import BadCredentials, Unauthenticated, VerifierBusy

P = TypeVar("P", bound=Operation)


async def get_services(request: Request) -> Services:
    # Async: FastAPI runs a sync dependency on the thread pool, a thread hop per request for
    # an attribute read.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

# One limiter per event loop (a test suite runs several): anyio's limiters belong to a loop.
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = \
    weakref.WeakKeyDictionary()


def _limiter(services: Services) -> anyio.CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(services.settings.auth_concurrency)
    return limiter


def basic_credentials(header: str | None) -> tuple[str, str]:
    """(client id, secret) from an HTTP Basic ``Authorization`` header (RFC 7617)."""
    if not header:
        raise Unauthenticated("send the client id and secret with HTTP Basic authentication")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        raise BadCredentials("only HTTP Basic authentication is accepted")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise BadCredentials("malformed Basic credentials") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id or not secret:
        raise BadCredentials("malformed Basic credentials")
    return client_id, secret


async def authenticate(request: Request, services: ServicesDep) -> Principal:
    """HTTP Basic (RFC 7617) with the client id and secret `jpki client add` printed."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("send the client id and secret with HTTP Basic authentication")
    address = request.client.host if request.client else None
    throttle, clients = services.auth_throttle, services.clients
    client_id: str | None = None  # the claimed id, once it has the form of one
    try:
        claimed, secret = basic_credentials(header)
        client_id = claimed if valid_client_id(claimed) else None
        throttle.check(address, client_id)
        if client_id is None:
            raise BadCredentials("the credentials are invalid")
        verdict: Authenticated | LegacyCheck | None = clients.remembered(client_id, secret)
        if verdict is not None:
            if clients.kept.claim_poll():
                run_claimed(clients.kept.run_claimed_poll, clients.kept.release_claim)
        else:
            verdict = await anyio.to_thread.run_sync(clients.check, client_id, secret,
                                                     limiter=_limiter(services))
        if isinstance(verdict, LegacyCheck):
            future = clients.legacy.submit(
                functools.partial(clients.verify_legacy, verdict, secret))
            try:
                verdict = await asyncio.wait_for(asyncio.wrap_future(future),
                                                 clients.legacy_wait_seconds)
            except TimeoutError:
                raise VerifierBusy("the credential check took too long; retry shortly",
                                   retry_after=1) from None
    except BadCredentials:
        # Counted in the database, shared by every node (jpki.access.auth_throttle): a write,
        # so on a thread, under the same limiter as the checks.
        await anyio.to_thread.run_sync(throttle.failed, address, client_id,
                                       limiter=_limiter(services))
        raise
    request.state.principal = verdict.principal
    # Read with the credentials: this request's relying-party admission need not read it again.
    request.state.rp_standing = verdict.standing
    return verdict.principal


def run_claimed(poll: Callable[[], None], release: Callable[[], None]) -> None:
    """Run a claimed poll of a change feed (the credentials', the status rows') on a thread, not
    waited for: the calls meanwhile answer from what is kept, which is fresh enough. ``poll``
    logs its own failures and releases the claim; ``release`` gives it up if it cannot start."""
    try:
        asyncio.get_running_loop().run_in_executor(None, poll)
    except BaseException:
        release()
        raise


# The operation each authorising dependency decides (see operations_of).
_OPERATIONS: dict[Callable[..., Any], Operation] = {}


def declare(dependency: Callable[..., Any], operation: Operation) -> None:
    """Record that ``dependency`` authorises ``operation``, so that the routes using it can be
    held to the table of jpki.access.authz (tests/api/test_http_auth.py)."""
    _OPERATIONS[dependency] = operation


def authorized(operation: P) -> Callable[..., Coroutine[Any, Any, Grant[P]]]:
    """A dependency that authenticates and then asks the table (jpki.access.authz) whether the
    caller may make ``operation``: the grant the route hands to the service. Refused before the
    body is read (async: deciding needs no thread of the pool)."""

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Grant[P]:
        return authorize(principal, operation)

    declare(dependency, operation)
    return dependency


def operations_of(dependant: Any) -> set[Operation]:
    """The operations a route's dependencies authorise (one for each authorised route)."""
    found = set()
    for sub in dependant.dependencies:
        if sub.call in _OPERATIONS:
            found.add(_OPERATIONS[sub.call])
        found |= operations_of(sub)
    return found
