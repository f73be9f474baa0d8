"""The layered measures over smartphones, as the supervisor sees them (重層的な措置,
jpki.mobile.sweep): each run of the sweep — when, with which thresholds, what it revoked,
flagged and held — and one run's serials and device ids. The same service and operation as
``GET /v1/operators/mobile/sweeps`` (MOBILE_SWEEP_READ, national); serials and device ids only,
never personal data."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.console.pages import render, signed_in
from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import SignIn

router = APIRouter(prefix="/console/mobile-sweeps", include_in_schema=False)
SHOWN = 30


@router.get("")
async def sweeps_page(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        grant = authorize(session.user.principal, Operation.MOBILE_SWEEP_READ)
        sweep = request.app.state.services.mobile_sweep
        runs = await run_in_threadpool(sweep.reports, grant, SHOWN)
        chosen = request.query_params.get("id", "")[:64]
        detail = await run_in_threadpool(sweep.report, grant, chosen) if chosen else None
        settings = request.app.state.services.settings
        return render(request, "mobile_sweeps.html", session=session, runs=runs,
                      detail=detail, flag_days=settings.mobile_flag_silent_days,
                      hold_days=settings.mobile_hold_silent_days)

    return await signed_in(request, page)
