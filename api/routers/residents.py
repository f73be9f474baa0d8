"""Resident registration and registry events (operator role)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from api.deps import ServicesDep, authorized
from api.openapi import problems
from api.request_fields import ResidentId
from api.routers.convert import resident_out, revocation_out
from api.schemas import (
    EventOut,
    ResidentEventIn,
    ResidentIn,
    ResidentOut,
    ResidentSearchIn,
    ResidentSearchOut,
)
from jpki.access.authz import Grant, Operation, allows, authorize
from jpki.registry.dv_support import DvAsk, DvCategory
from jpki.registry.residents import ResidentEvent
from jpki.validity import jst_date

router = APIRouter(prefix="/v1/operators/residents", tags=["residents"])
# A search is a resource of its own, so that its path can never be taken for a resident's id.
searches = APIRouter(prefix="/v1/operators/resident-searches", tags=["residents"])

Register = Annotated[Grant[Literal[Operation.RESIDENT_REGISTER]],
                     Depends(authorized(Operation.RESIDENT_REGISTER))]
Find = Annotated[Grant[Literal[Operation.RESIDENT_FIND]],
                 Depends(authorized(Operation.RESIDENT_FIND))]
Read = Annotated[Grant[Literal[Operation.RESIDENT_READ]],
                 Depends(authorized(Operation.RESIDENT_READ))]
Event = Annotated[Grant[Literal[Operation.RESIDENT_EVENT]],
                  Depends(authorized(Operation.RESIDENT_EVENT))]


@router.post("", status_code=201, response_model=ResidentOut, response_model_exclude_unset=True,
             responses=problems(400, 404))
def register_resident(body: ResidentIn, grant: Register, services: ServicesDep) -> ResidentOut:
    """Register a resident; with ``dv_request``, also ask for DV support measures, which a
    supervisor decides (``/v1/operators/dv-requests``)."""
    asked = DvAsk(authorize(grant.principal, Operation.DV_REQUEST),
                  DvCategory(body.dv_request)) if body.dv_request is not None else None
    resident = services.residents.register(
        grant, name=body.name, birth_date=body.birth_date, sex=body.sex, address=body.address,
        municipality_code=body.municipality_code, name_kana=body.name_kana, dv_request=asked)
    return resident_out(resident, with_basic4=False, today=jst_date(services.clock.now()))


@searches.post("", response_model=ResidentSearchOut,
             response_model_exclude_unset=True, responses=problems(400))
def find_residents(body: ResidentSearchIn, grant: Find,
                   services: ServicesDep) -> ResidentSearchOut:
    """Residents of the caller's municipalities with this name (or reading, in kana) and date
    of birth; at most 20. Audited with the count found, never with what was asked."""
    found = services.residents.find(grant, name=body.name, birth_date=body.birth_date)
    today = jst_date(services.clock.now())
    return ResidentSearchOut(residents=[
        resident_out(r, with_basic4=allows(grant.principal, Operation.RESIDENT_BASIC4_READ),
                     today=today) for r in found])


@router.get("/{resident_id}", response_model=ResidentOut, response_model_exclude_unset=True,
            responses=problems(404))
def get_resident(resident_id: ResidentId, grant: Read, services: ServicesDep) -> ResidentOut:
    resident = services.residents.get(grant, resident_id)
    return resident_out(resident,
                        with_basic4=allows(grant.principal, Operation.RESIDENT_BASIC4_READ),
                        today=jst_date(services.clock.now()))


@router.post("/{resident_id}/events", response_model=EventOut,
             responses=problems(400, 404, 422))
def record_event(resident_id: ResidentId, body: ResidentEventIn, grant: Event,
                 services: ServicesDep) -> EventOut:
    outcome = services.residents.record_event(grant, resident_id, ResidentEvent(
        kind=body.kind, address=body.address, name=body.name, sex=body.sex,
        birth_date=body.birth_date, date=body.date, municipality_code=body.municipality_code))
    return EventOut(resident_id=outcome.resident.id, changed=outcome.changed,
                    revoked=[revocation_out(r) for r in outcome.revocations])
