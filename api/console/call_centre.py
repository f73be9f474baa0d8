"""The call centre's pages (コールセンター): find the caller from what they can tell, then put a
lost phone's or a lost card's certificates on hold.

The caller's file is shown once its card number and date of birth match (jpki.registry.
call_centre), never from a list, and never with the basic 4 information. The actions that follow
carry a *caller ticket* instead of the resident's id: the id, the card number and an expiry,
MACed with the session's own secret (its CSRF token, kept server-side), so an agent acts on the
caller they verified within the last ``TICKET_SECONDS``, in this session, and on nobody else —
an edited form is refused before anything is done. Each action is the same service call and
authorisation as the REST API's (/v1/callcenter/holds), audited under ``console:<agent>``.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.console.pages import CsrfRefused, render, signed_in, typed_date
from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import SignIn

router = APIRouter(prefix="/console/callcentre", include_in_schema=False)
TICKET_SECONDS = 600


def ticket(session: SignIn, resident_id: str, card_number: str,
           now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + TICKET_SECONDS)
    body = f"{resident_id}.{card_number}.{expires}"
    mac = hmac.new(session.csrf.encode(), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def redeem(session: SignIn, value: str | None) -> tuple[str, str]:
    """The (resident id, card number) of a ticket this session issued and that has not
    expired; else the form is refused as forged."""
    parts = (value or "").split(".")
    if len(parts) != 4 or not parts[2].isdigit():
        raise CsrfRefused()
    resident_id, card_number, expires, mac = parts
    body = f"{resident_id}.{card_number}.{expires}"
    good = hmac.new(session.csrf.encode(), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(good, mac) or int(expires) < time.time():
        raise CsrfRefused()
    return resident_id, card_number


@router.get("")
async def find_page(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        authorize(session.user.principal, Operation.CALLER_VERIFY)
        return render(request, "callcentre_find.html", session=session)

    return await signed_in(request, page)


@router.post("")
async def find(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        form = request.state.form
        grant = authorize(session.user.principal, Operation.CALLER_VERIFY)
        services = request.app.state.services
        found = await run_in_threadpool(services.call_centre.verify_caller, grant,
                                        form.get("card_number", ""),
                                        typed_date(form.get("birth_date", "")))
        return render(request, "callcentre_file.html", session=session, caller=found,
                      ticket=ticket(session, found.resident_id, found.card_number))

    return await signed_in(request, page, form_post=True)


@router.post("/phone-hold")
async def phone_hold(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        resident_id, _ = redeem(session, request.state.form.get("ticket"))
        grant = authorize(session.user.principal, Operation.MOBILE_HOLD)
        held = await run_in_threadpool(request.app.state.services.mobile.hold, grant,
                                       resident_id)
        return render(request, "callcentre_done.html", session=session, action="phone",
                      serials=[r.serial for r in held])

    return await signed_in(request, page, form_post=True)


@router.post("/card-lost")
async def card_lost(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        _, card_number = redeem(session, request.state.form.get("ticket"))
        grant = authorize(session.user.principal, Operation.CARD_LOSS_REPORT)
        outcome = await run_in_threadpool(request.app.state.services.cards.report_lost, grant,
                                          card_number)
        return render(request, "callcentre_done.html", session=session, action="card",
                      serials=[r.serial for r in outcome.revocations])

    return await signed_in(request, page, form_post=True)
