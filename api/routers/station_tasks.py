"""Work a counter gives an enrolment station, and its live status (jpki.registry.station_tasks):
the clerk queues and follows a task (operator role, the resident's municipality); the station
claims its own and reports each step (station role)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response

from api.deps import ServicesDep, authorized
from api.openapi import problems
from api.request_fields import StationTaskId
from api.schemas import EvidenceIn, StationReportIn, StationTaskIn, StationTaskOut
from jpki.access.authz import Grant, Operation
from jpki.model import StationTask
from jpki.registry.proofing import Document, Evidence
from jpki.registry.station_tasks import Report

router = APIRouter(tags=["counter"])

Create = Annotated[Grant[Literal[Operation.STATION_TASK_CREATE]],
                   Depends(authorized(Operation.STATION_TASK_CREATE))]
Read = Annotated[Grant[Literal[Operation.STATION_TASK_READ]],
                 Depends(authorized(Operation.STATION_TASK_READ))]
Work = Annotated[Grant[Literal[Operation.STATION_TASK_WORK]],
                 Depends(authorized(Operation.STATION_TASK_WORK))]


def evidence_of(body: EvidenceIn) -> Evidence:
    """The documents checked, as the proofing rules take them (jpki.registry.proofing)."""
    return Evidence(
        presence=body.presence,
        applicant_documents=tuple(Document(d.type, d.has_photo, d.issued_on)
                                  for d in body.applicant_documents),
        measures=frozenset(body.measures),
        proxy_documents=tuple(Document(d.type, d.has_photo, d.issued_on)
                              for d in body.proxy_documents),
        proxy_measures=frozenset(body.proxy_measures),
        delegation_letter=body.delegation_letter, hardship_proof=body.hardship_proof,
        applicant_in_facility=body.applicant_in_facility)


def task_out(task: StationTask) -> StationTaskOut:
    return StationTaskOut(
        id=task.id, station=task.station, resident_id=task.resident_id, kind=task.kind,
        status=task.status, step=task.step, error_code=task.error_code,
        serials=json.loads(task.serials) if task.serials else None,
        proofing=json.loads(task.proofing), created_by=task.created_by,
        created_at=task.created_at, updated_at=task.updated_at)


@router.post("/v1/operators/station-tasks", status_code=201, response_model=StationTaskOut,
             responses=problems(400, 404, 409, 422))
def create(body: StationTaskIn, grant: Create, services: ServicesDep) -> StationTaskOut:
    """Queue an issuance or renewal for a station of the resident's municipality, with the
    identity proofing the clerk checked (refused at once if it satisfies no pattern)."""
    return task_out(services.station_tasks.create(grant, body.resident_id, station=body.station,
                                                  kind=body.kind,
                                                  evidence=evidence_of(body.proofing)))


@router.get("/v1/operators/station-tasks/{task_id}", response_model=StationTaskOut,
            responses=problems(404))
def view(task_id: StationTaskId, grant: Read, services: ServicesDep) -> StationTaskOut:
    """The task and the last step its station reported."""
    return task_out(services.station_tasks.view(grant, task_id))


@router.post("/v1/operators/station-tasks/{task_id}/cancellation",
             response_model=StationTaskOut, responses=problems(404, 409))
def cancel(task_id: StationTaskId, grant: Create, services: ServicesDep) -> StationTaskOut:
    """Cancel a task no station has claimed yet."""
    return task_out(services.station_tasks.cancel(grant, task_id))


@router.post("/v1/stations/task-claims", response_model=StationTaskOut,
             responses={204: {"description": "No task is waiting for this station"}})
def claim(grant: Work, services: ServicesDep) -> StationTaskOut | Response:
    """The calling station's oldest queued task, now claimed (204 when none waits)."""
    task = services.station_tasks.claim(grant)
    return task_out(task) if task is not None else Response(status_code=204)


@router.post("/v1/stations/tasks/{task_id}/reports", response_model=StationTaskOut,
             responses=problems(400, 404, 409))
def report(task_id: StationTaskId, body: StationReportIn, grant: Work,
           services: ServicesDep) -> StationTaskOut:
    """The step the station is at, or how the task ended (done with the serials it issued,
    or failed with the problem code)."""
    return task_out(services.station_tasks.report(grant, task_id, Report(
        step=body.step, outcome=body.outcome, error_code=body.error_code,
        serials={str(k): v for k, v in body.serials.items()} if body.serials else None)))
