"""The counter (station role): identity proofing, PIN-reset authorisation, delivery."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from api.deps import ServicesDep, authorized
from api.openapi import problems
from api.request_fields import Serial
from api.routers.convert import revocation_out
from api.routers.station_tasks import evidence_of
from api.schemas import (
    DeliveryOut,
    PinResetIn,
    PinResetOut,
    ProofingIn,
    ProofingOut,
    RevocationOut,
)
from jpki.access.authz import Grant, Operation
from jpki.serials import parse_serial

router = APIRouter(prefix="/v1/stations", tags=["counter"])

Proofing = Annotated[Grant[Literal[Operation.PROOFING_RECORD]],
                     Depends(authorized(Operation.PROOFING_RECORD))]
PinReset = Annotated[Grant[Literal[Operation.PIN_RESET]], Depends(authorized(Operation.PIN_RESET))]
Delivery = Annotated[Grant[Literal[Operation.DELIVERY_CONFIRM]],
                     Depends(authorized(Operation.DELIVERY_CONFIRM))]
Abandonment = Annotated[Grant[Literal[Operation.DELIVERY_ABANDON]],
                        Depends(authorized(Operation.DELIVERY_ABANDON))]


@router.post("/proofings", status_code=201, response_model=ProofingOut,
             responses=problems(400, 404, 422))
def record_proofing(body: ProofingIn, grant: Proofing, services: ServicesDep) -> ProofingOut:
    """Record the identity documents checked at the counter; refused (422
    `proofing.insufficient`) unless they satisfy one of the patterns A–E of reference §5."""
    record = services.counter.record_proofing(grant, body.resident_id, evidence_of(body))
    return ProofingOut(id=record.id, resident_id=record.resident_id, pattern=record.pattern,
                       presence=record.presence, expires_at=record.expires_at)


@router.post("/pin-resets", response_model=PinResetOut, responses=problems(404, 422))
def authorise_pin_reset(body: PinResetIn, grant: PinReset,
                        services: ServicesDep) -> PinResetOut:
    result = services.counter.authorise_pin_reset(grant, body.resident_id, body.pin,
                                                  body.proofing_id)
    return PinResetOut(resident_id=result.resident_id, pin=result.pin, authorised_at=result.at)


@router.post("/certificates/{serial}/delivery", response_model=DeliveryOut,
             responses=problems(400, 404, 409))
def confirm_delivery(serial: Serial, grant: Delivery, services: ServicesDep) -> DeliveryOut:
    """The station wrote the certificate onto the card and read it back."""
    canonical = parse_serial(serial)
    return DeliveryOut(serial=canonical,
                       delivered_at=services.counter.confirm_delivery(grant, canonical))


@router.post("/certificates/{serial}/abandonment", response_model=RevocationOut,
             responses=problems(400, 404, 409))
def abandon_delivery(serial: Serial, grant: Abandonment,
                     services: ServicesDep) -> RevocationOut:
    """The card never got it (removed mid-enrolment): revoke, "destroyed before delivery"."""
    return revocation_out(services.counter.abandon_delivery(grant, parse_serial(serial)))
