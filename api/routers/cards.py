"""Cards: registration of a new card, and loss / found / return (operator role)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from api.deps import ServicesDep, authorized
from api.openapi import problems
from api.request_fields import CardNumber
from api.routers.convert import revocation_out
from api.schemas import CardEventIn, CardOut, CardRegistrationIn
from jpki.access.authz import Grant, Operation
from jpki.lifecycle.cards import CardSpec
from jpki.registry.cards import CardEventOutcome

router = APIRouter(prefix="/v1/operators/cards", tags=["cards"])

Register = Annotated[Grant[Literal[Operation.CARD_REGISTER]],
                     Depends(authorized(Operation.CARD_REGISTER))]
Event = Annotated[Grant[Literal[Operation.CARD_EVENT]], Depends(authorized(Operation.CARD_EVENT))]


def _out(outcome: CardEventOutcome) -> CardOut:
    c = outcome.card
    return CardOut(number=c.number, resident_id=c.resident_id, expires_on=c.expires_on,
                   status=c.status.value, revoked=[revocation_out(r) for r in outcome.revocations])


@router.post("", status_code=201, response_model=CardOut,
             responses=problems(400, 404, 409, 422))
def register_card(body: CardRegistrationIn, grant: Register, services: ServicesDep) -> CardOut:
    return _out(services.cards.register(grant, body.resident_id,
                                        CardSpec(number=body.number, expires_on=body.expires_on)))


@router.post("/{number}/events", response_model=CardOut, responses=problems(404, 422))
def card_event(number: CardNumber, body: CardEventIn, grant: Event,
               services: ServicesDep) -> CardOut:
    return _out(services.cards.record_event(grant, number, body.kind))
