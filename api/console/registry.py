"""The counter's registry pages (窓口): find a resident from what they tell the counter (name or
its reading, and date of birth — never a list to browse), read their record, register a new one,
and record the registry's events (a move, a change of name, death, emigration), each through the
same service call and authorisation as /v1/operators/residents, within the clerk's municipality.

Searches are POSTed: a name and a date of birth never travel in a URL, where access logs and
browser histories would keep them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.console.dv import SET_CATEGORIES, shows_address
from api.console.pages import redirect, render, signed_in, typed_date
from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import SignIn
from jpki.errors import InvalidInput
from jpki.model import Resident, RevocationReason
from jpki.registry.cards import CardEvent
from jpki.registry.residents import EventKind, ResidentEvent

router = APIRouter(prefix="/console/residents", include_in_schema=False)
# The events a counter records here, and the fields each needs (ResidentService._apply).
EVENTS: dict[str, tuple[str, ...]] = {
    "address": ("address",), "name": ("name",), "death": ("date",),
    "emigration": ("date", "address"),
}


def _optional_date(value: str | None) -> date | None:
    return typed_date(value) if value and value.strip() else None


REVOCATION_REASONS = (RevocationReason.KEY_COMPROMISE, RevocationReason.CESSATION_OF_OPERATION,
                      RevocationReason.UNSPECIFIED)


async def resident_view(request: Request, session: SignIn, resident: Resident,
                        **extra: Any) -> Response:
    """A resident's page: the record (the address withheld where the DV measures say so), the
    card in use and the certificates, with what this person may do about them."""
    principal = session.user.principal
    services = request.app.state.services
    card = await run_in_threadpool(services.cards.latest,
                                   authorize(principal, Operation.RESIDENT_READ), resident.id)
    certificates = await run_in_threadpool(services.certificates.of_resident,
                                           authorize(principal, Operation.CERTIFICATE_READ),
                                           resident.id)
    context: dict[str, Any] = {"outcome": None, **extra}
    return render(request, "resident.html", session=session, resident=resident, events=EVENTS,
                  categories=SET_CATEGORIES, card=card, certificates=certificates,
                  reasons=REVOCATION_REASONS,
                  address_shown=shows_address(session.user, resident), **context)


async def _reload(request: Request, session: SignIn, resident_id: str,
                  **extra: Any) -> Response:
    read = authorize(session.user.principal, Operation.RESIDENT_READ)
    resident = await run_in_threadpool(request.app.state.services.residents.get, read,
                                       resident_id)
    return await resident_view(request, session, resident, **extra)


@router.post("/card-event")
async def card_event(request: Request) -> Response:
    """Lost (its certificates on hold), found or returned (revoked) — as
    POST /v1/operators/cards/{number}/events."""

    async def page(request: Request, session: SignIn) -> Response:
        form = request.state.form
        kind = form.get("kind", "")
        if kind not in {e.value for e in CardEvent}:
            raise InvalidInput("lost, found or returned", field="kind")
        grant = authorize(session.user.principal, Operation.CARD_EVENT)
        outcome = await run_in_threadpool(request.app.state.services.cards.record_event, grant,
                                          form.get("card_number", ""), CardEvent(kind))
        return await _reload(request, session, outcome.card.resident_id,
                             card_done=kind, revoked=len(outcome.revocations))

    return await signed_in(request, page, form_post=True)


@router.post("/revoke")
async def revoke(request: Request) -> Response:
    """A certificate revoked at the holder's request, as
    POST /v1/operators/certificates/{serial}/revocation."""

    async def page(request: Request, session: SignIn) -> Response:
        form = request.state.form
        reason = form.get("reason", "")
        allowed = {r.rfc_name: r for r in REVOCATION_REASONS}
        if reason not in allowed:
            raise InvalidInput("not a reason the counter gives", field="reason")
        services = request.app.state.services
        principal = session.user.principal
        view = await run_in_threadpool(services.certificates.show,
                                       authorize(principal, Operation.CERTIFICATE_READ),
                                       form.get("serial", "").lower()[:40])
        await run_in_threadpool(services.revocation.revoke,
                                authorize(principal, Operation.CERTIFICATE_REVOKE), view.serial,
                                allowed[reason])
        return await _reload(request, session, view.resident_id, revoked_serial=view.serial)

    return await signed_in(request, page, form_post=True)


@router.get("")
async def resident_page(request: Request) -> Response:
    """The search form; with ``?id=`` a resident's record (RESIDENT_READ and
    RESIDENT_BASIC4_READ, as GET /v1/operators/residents/{id})."""

    async def page(request: Request, session: SignIn) -> Response:
        principal = session.user.principal
        basic4 = authorize(principal, Operation.RESIDENT_BASIC4_READ)
        resident_id = request.query_params.get("id", "").strip()
        if not resident_id:
            return render(request, "residents.html", session=session, results=None)
        read = authorize(principal, Operation.RESIDENT_READ)
        found = await run_in_threadpool(request.app.state.services.residents.get, read,
                                        resident_id)
        basic4.require_municipality(found.municipality_code)
        return await resident_view(request, session, found)

    return await signed_in(request, page)


@router.post("/search")
async def search(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        form = request.state.form
        grant = authorize(session.user.principal, Operation.RESIDENT_FIND)
        found = await run_in_threadpool(
            lambda: request.app.state.services.residents.find(
                grant, name=form.get("name", ""), birth_date=typed_date(form.get("birth_date",
                                                                                 ""))))
        return render(request, "residents.html", session=session, results=found)

    return await signed_in(request, page, form_post=True)


@router.get("/new")
async def new_page(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        authorize(session.user.principal, Operation.RESIDENT_REGISTER)
        return render(request, "resident_new.html", session=session)

    return await signed_in(request, page)


@router.post("/new")
async def register(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        form = request.state.form
        grant = authorize(session.user.principal, Operation.RESIDENT_REGISTER)
        # A clerk registers in their own municipality; a supervisor names one.
        municipality = session.user.municipality_code or form.get("municipality_code", "")
        sex = form.get("sex", "")
        if sex not in ("1", "2", "9"):
            raise InvalidInput("sex is 1, 2 or 9", field="sex")
        registered = await run_in_threadpool(
            lambda: request.app.state.services.residents.register(
                grant, name=form.get("name", ""), name_kana=form.get("name_kana") or None,
                birth_date=typed_date(form.get("birth_date", "")), sex=int(sex),
                address=form.get("address", ""), municipality_code=municipality))
        return redirect(request, f"/console/residents?id={registered.id}")

    return await signed_in(request, page, form_post=True)


@router.post("/events")
async def record_event(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        form = request.state.form
        kind = form.get("kind", "")
        if kind not in EVENTS:
            raise InvalidInput("not an event the counter records here", field="kind")
        fields: dict[str, Any] = {"kind": EventKind(kind)}
        for name in EVENTS[kind]:
            value = form.get(name, "")
            fields[name] = _optional_date(value) if name == "date" else (value or None)
        grant = authorize(session.user.principal, Operation.RESIDENT_EVENT)
        services = request.app.state.services
        outcome = await run_in_threadpool(services.residents.record_event, grant,
                                          form.get("resident_id", ""), ResidentEvent(**fields))
        return await resident_view(request, session, outcome.resident, outcome=outcome)

    return await signed_in(request, page, form_post=True)
