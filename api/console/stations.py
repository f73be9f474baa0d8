"""The counter's work at a station, with its live status (jpki.registry.station_tasks).

The clerk picks a station of the resident's municipality, issue or renew, and the identity
documents checked; the task is queued for that station, whose operator starts
``jpki-station work`` with the card in the reader (the holder types the PINs there, never
here). The task's page follows it: it reloads itself every two seconds while the task is open
(a ``<meta http-equiv="refresh">``, which the CSP allows: no script) and lists the steps the
station has reported. Each action is the same service and authorisation as the REST API's
(/v1/operators/station-tasks).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.console.pages import redirect, render, signed_in
from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import SignIn
from jpki.errors import InvalidInput
from jpki.registry.proofing import Document, DocumentType, Evidence, Measure, Presence
from jpki.registry.station_tasks import KINDS, OPEN, STEPS_OF
from jpki.validity import JST

router = APIRouter(prefix="/console/station-tasks", include_in_schema=False)

# The documents a counter sees most (reference §5: 甲 with a photo, then 乙), offered as
# check boxes; the full guide through patterns A–E is the proofing page's.
DOCUMENTS = (DocumentType.MY_NUMBER_CARD, DocumentType.DRIVERS_LICENSE, DocumentType.PASSPORT,
             DocumentType.RESIDENCE_CARD, DocumentType.HEALTH_INSURANCE_CARD,
             DocumentType.PENSION_CERTIFICATE, DocumentType.INQUIRY_REPLY)
MEASURES = tuple(Measure)
REFRESH_SECONDS = 2


def evidence_from(form: dict[str, str]) -> Evidence:
    documents = tuple(Document(d) for d in DOCUMENTS if form.get(f"doc.{d.value}") == "on")
    if not documents:
        raise InvalidInput("tick the documents the applicant showed", field="documents")
    return Evidence(presence=Presence.IN_PERSON, applicant_documents=documents,
                    measures=frozenset(m for m in MEASURES
                                       if form.get(f"measure.{m.value}") == "on"))


@router.get("/new")
async def new_page(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        grant = authorize(session.user.principal, Operation.STATION_TASK_CREATE)
        resident_id = request.query_params.get("resident", "")[:32]
        stations = await run_in_threadpool(request.app.state.services.station_tasks.stations,
                                           grant, resident_id)
        return render(request, "station_task_new.html", session=session,
                      resident_id=resident_id, stations=stations, documents=DOCUMENTS,
                      measures=MEASURES)

    return await signed_in(request, page)


@router.post("")
async def create(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        form: dict[str, str] = request.state.form
        kind = form.get("kind", "")
        if kind not in KINDS:
            raise InvalidInput("issue, renew or a PIN reset", field="kind")
        grant = authorize(session.user.principal, Operation.STATION_TASK_CREATE)
        task = await run_in_threadpool(lambda: request.app.state.services.station_tasks.create(
            grant, form.get("resident_id", "")[:32], station=form.get("station", "")[:64],
            kind=kind, evidence=evidence_from(form)))
        return redirect(request, f"/console/station-tasks/{task.id}")

    return await signed_in(request, page, form_post=True)


@router.get("/{task_id}")
async def task_page(request: Request, task_id: str) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        grant = authorize(session.user.principal, Operation.STATION_TASK_READ)
        task = await run_in_threadpool(request.app.state.services.station_tasks.view, grant,
                                       task_id[:32])
        return render(request, "station_task.html", session=session, task=task,
                      serials=json.loads(task.serials) if task.serials else {},
                      updated=task.updated_at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S JST"),
                      **progress(task.kind, task.step, task.status))

    return await signed_in(request, page)


@router.post("/{task_id}/cancel")
async def cancel(request: Request, task_id: str) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        grant = authorize(session.user.principal, Operation.STATION_TASK_CREATE)
        await run_in_threadpool(request.app.state.services.station_tasks.cancel, grant,
                                task_id[:32])
        return redirect(request, f"/console/station-tasks/{task_id[:32]}")

    return await signed_in(request, page, form_post=True)


def progress(kind: str, step: str | None, status: str) -> dict[str, Any]:
    """Each step with its state — done, current or to come — and whether the page reloads."""
    steps = STEPS_OF[kind]
    reached = steps.index(step) if step in steps else -1
    ended = status not in OPEN
    states = []
    for i, name in enumerate(steps[1:], start=1):
        if i < reached or (i == reached and status == "done"):
            state = "done"
        elif i == reached:
            state = "failed" if status == "failed" else "current"
        else:
            state = "todo"
        states.append((name, state))
    return {"steps": states, "refresh": None if ended else REFRESH_SECONDS}
