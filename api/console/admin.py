"""The supervisor's management pages: the console's counter clerks and call-centre agents
(supervisors themselves are made at the CLI: jpki.access.console_accounts), the enrolment
stations' API clients, the kiosks and holder apps of the signing-password reset, and the
relying parties — listing, making, suspending and resuming,
through the same services and authorisation table as the CLI and the REST API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.console.pages import render, signed_in
from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import ConsoleRole, SignIn
from jpki.errors import InvalidInput
from jpki.model import ClientRole, ClientStatus

router = APIRouter(prefix="/console/admin", include_in_schema=False)
MANAGED_ROLES = (ConsoleRole.CLERK, ConsoleRole.AGENT)
# The signing-password reset's clients (architecture §7.1): suspended here as stations are.
KIOSK_ROLES = (ClientRole.KIOSK, ClientRole.HOLDER_APP)


def _status(value: str) -> ClientStatus:
    if value not in ("active", "suspended"):
        raise InvalidInput("active or suspended", field="status")
    return ClientStatus(value)


async def _overview(request: Request, session: SignIn, **extra: Any) -> Response:
    principal = session.user.principal
    services = request.app.state.services
    accounts = await run_in_threadpool(services.console.accounts,
                                       authorize(principal, Operation.CONSOLE_ACCOUNT_READ))
    clients = await run_in_threadpool(services.clients.list_clients,
                                      authorize(principal, Operation.CLIENT_READ))
    parties = await run_in_threadpool(services.relying_parties.list_all,
                                      authorize(principal, Operation.RP_READ))
    return render(request, "admin.html", session=session, accounts=accounts,
                  stations=[c for c in clients if c.role is ClientRole.STATION],
                  kiosks=[c for c in clients if c.role in KIOSK_ROLES],
                  parties=parties, roles=MANAGED_ROLES, **extra)


@router.get("")
async def overview(request: Request) -> Response:
    return await signed_in(request, _overview)


@router.post("/accounts")
async def add_account(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        form = request.state.form
        role = form.get("role", "")
        if role not in {r.value for r in MANAGED_ROLES}:
            raise InvalidInput("a clerk or an agent", field="role")
        grant = authorize(session.user.principal, Operation.CONSOLE_ACCOUNT_CREATE)
        made = await run_in_threadpool(lambda: request.app.state.services.console.create(
            grant, username=form.get("username", ""), role=ConsoleRole(role),
            municipality_code=form.get("municipality_code") or None))
        return await _overview(request, session, made=made)

    return await signed_in(request, page, form_post=True)


async def _set_status(request: Request, operation: Operation, service: str,
                      field: str) -> Response:
    """Suspend or resume what ``field`` names, through ``services.<service>.set_status`` and
    the grant of ``operation``; then the overview again."""

    async def page(request: Request, session: SignIn) -> Response:
        form = request.state.form
        grant = authorize(session.user.principal, operation)
        change = getattr(request.app.state.services, service).set_status
        await run_in_threadpool(change, grant, form.get(field, ""),
                                _status(form.get("status", "")))
        return await _overview(request, session, done="admin.done")

    return await signed_in(request, page, form_post=True)


@router.post("/accounts/status")
async def account_status(request: Request) -> Response:
    return await _set_status(request, Operation.CONSOLE_ACCOUNT_SET_STATUS, "console",
                             "username")


@router.post("/stations/status")
@router.post("/kiosks/status")
async def device_status(request: Request) -> Response:
    """A station's, kiosk's or holder app's client: the table of §2.6 decides which a
    supervisor may suspend (never an operator's client)."""
    return await _set_status(request, Operation.CLIENT_SET_STATUS, "clients", "client_id")


@router.post("/relying-parties/status")
async def party_status(request: Request) -> Response:
    return await _set_status(request, Operation.RP_SET_STATUS, "relying_parties", "rp_id")
