"""DV support measures (DV等支援措置) over REST: a counter asks, a supervisor — a second person
— decides (jpki.registry.dv_support). The console's pages call the same service with the same
operations (api.console.dv)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from api.deps import ServicesDep, authorized
from api.openapi import problems
from api.request_fields import DvRequestId, ResidentId
from api.schemas import DvDecisionIn, DvRequestIn, DvRequestOut
from jpki.access.authz import Grant, Operation
from jpki.model import DvRequest
from jpki.registry.dv_support import DvCategory

router = APIRouter(tags=["residents"])

Ask = Annotated[Grant[Literal[Operation.DV_REQUEST]], Depends(authorized(Operation.DV_REQUEST))]
Decide = Annotated[Grant[Literal[Operation.DV_DECIDE]],
                   Depends(authorized(Operation.DV_DECIDE))]


def _out(request: DvRequest) -> DvRequestOut:
    return DvRequestOut.model_validate(request, from_attributes=True)


@router.post("/v1/operators/residents/{resident_id}/dv-requests", status_code=201,
             response_model=DvRequestOut, responses=problems(400, 404, 409))
def ask(resident_id: ResidentId, body: DvRequestIn, grant: Ask,
        services: ServicesDep) -> DvRequestOut:
    """Ask to set (with why) or lift the measures; nothing changes until a supervisor
    decides."""
    return _out(services.dv_support.request(grant, resident_id, turn_on=body.turn_on,
                                            category=DvCategory(body.category)))


@router.get("/v1/operators/dv-requests", response_model=list[DvRequestOut])
def pending(grant: Decide, services: ServicesDep) -> list[DvRequestOut]:
    """The requests waiting for a decision."""
    return [_out(r) for r in services.dv_support.pending(grant)]


@router.post("/v1/operators/dv-requests/{request_id}/decision", response_model=DvRequestOut,
             responses=problems(403, 404, 409))
def decide(request_id: DvRequestId, body: DvDecisionIn, grant: Decide,
           services: ServicesDep) -> DvRequestOut:
    """Approve (the resident's measures change, in the same transaction) or reject; never by
    the person who asked."""
    return _out(services.dv_support.decide(grant, request_id, approve=body.approve).request)
