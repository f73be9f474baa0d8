"""DV support measures at the console: the counter asks (on the resident's page), a supervisor
decides (here), never the same person (jpki.registry.dv_support). And while a resident is under
the measures the console shows their address only to the counters of their own municipality,
which keep it; every other role sees that it is withheld (:func:`shows_address`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.console.pages import render, signed_in
from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import ConsoleRole, ConsoleUser, SignIn
from jpki.errors import InvalidInput
from jpki.model import Resident
from jpki.registry.dv_support import DvCategory

router = APIRouter(include_in_schema=False)
SET_CATEGORIES = tuple(c for c in DvCategory if c is not DvCategory.ENDED)


def shows_address(user: ConsoleUser, resident: Resident) -> bool:
    """Whether ``user`` may see ``resident``'s address at the console."""
    if not resident.dv_support:
        return True
    return user.role is ConsoleRole.CLERK and user.municipality_code == resident.municipality_code


@router.post("/console/residents/dv-request")
async def dv_request(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        form = request.state.form
        action = form.get("action", "")
        if action not in ("set", "lift"):
            raise InvalidInput("set or lift", field="action")
        category = DvCategory.ENDED if action == "lift" else DvCategory(
            _category(form.get("category", "")))
        grant = authorize(session.user.principal, Operation.DV_REQUEST)
        services = request.app.state.services
        await run_in_threadpool(lambda: services.dv_support.request(
            grant, form.get("resident_id", ""), turn_on=action == "set", category=category))
        read = authorize(session.user.principal, Operation.RESIDENT_READ)
        resident = await run_in_threadpool(services.residents.get, read,
                                           form.get("resident_id", ""))
        from api.console.registry import resident_view

        return await resident_view(request, session, resident, dv_asked=True)

    return await signed_in(request, page, form_post=True)


def _category(value: str) -> str:
    if value not in {c.value for c in SET_CATEGORIES}:
        raise InvalidInput("not a category of support measures", field="category")
    return value


@router.get("/console/dv")
async def pending(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        grant = authorize(session.user.principal, Operation.DV_DECIDE)
        requests = await run_in_threadpool(request.app.state.services.dv_support.pending,
                                           grant)
        return render(request, "dv_pending.html", session=session, requests=requests,
                      decided=None)

    return await signed_in(request, page)


@router.post("/console/dv/decide")
async def decide(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        form = request.state.form
        decision = form.get("decision", "")
        if decision not in ("approve", "reject"):
            raise InvalidInput("approve or reject", field="decision")
        grant = authorize(session.user.principal, Operation.DV_DECIDE)
        services = request.app.state.services
        decided = await run_in_threadpool(lambda: services.dv_support.decide(
            grant, form.get("request_id", ""), approve=decision == "approve"))
        requests = await run_in_threadpool(services.dv_support.pending, grant)
        return render(request, "dv_pending.html", session=session, requests=requests,
                      decided=decided.request)

    return await signed_in(request, page, form_post=True)
