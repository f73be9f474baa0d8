"""Certificates: issuance and renewal (station role), revocation (operator), lookup."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from api.deps import ServicesDep, authorized
from api.openapi import problems
from api.request_fields import Serial
from api.routers.convert import certificate_out, revocation_out
from api.schemas import CertificateOut, IssuanceIn, IssuanceOut, RevocationIn, RevocationOut
from jpki.access.authz import Grant, Operation, authorize
from jpki.errors import InvalidInput
from jpki.issuance.service import IssuedCertificate, KeyRequest
from jpki.lifecycle.cards import CardSpec
from jpki.model import CertKind, RevocationReason
from jpki.serials import parse_serial

router = APIRouter(tags=["certificates"])

Issue = Annotated[Grant[Literal[Operation.CERTIFICATE_ISSUE]],
                  Depends(authorized(Operation.CERTIFICATE_ISSUE))]
Renew = Annotated[Grant[Literal[Operation.CERTIFICATE_RENEW]],
                  Depends(authorized(Operation.CERTIFICATE_RENEW))]
Revoke = Annotated[Grant[Literal[Operation.CERTIFICATE_REVOKE]],
                   Depends(authorized(Operation.CERTIFICATE_REVOKE))]
Read = Annotated[Grant[Literal[Operation.CERTIFICATE_READ]],
                 Depends(authorized(Operation.CERTIFICATE_READ))]


def _requests(body: IssuanceIn) -> list[KeyRequest]:
    requests = []
    if body.auth_public_key:
        requests.append(KeyRequest(CertKind.CARD_AUTH, body.auth_public_key.encode("ascii",
                                                                                   "replace")))
    if body.sign_public_key:
        requests.append(KeyRequest(CertKind.CARD_SIGN, body.sign_public_key.encode("ascii",
                                                                                   "replace")))
    if not requests:
        raise InvalidInput("send sign_public_key, auth_public_key or both", field="keys")
    return requests


def _card(body: IssuanceIn) -> CardSpec | None:
    return CardSpec(number=body.card.number, expires_on=body.card.expires_on) if body.card \
        else None


def _out(issued: list[IssuedCertificate], services: ServicesDep,
         grant: Grant[Literal[Operation.CERTIFICATE_ISSUE, Operation.CERTIFICATE_RENEW]]
         ) -> IssuanceOut:
    # The issuing station reads what it was issued (the table lets every issuer read).
    read: Grant[Literal[Operation.CERTIFICATE_READ]] = authorize(grant.principal,
                                                                 Operation.CERTIFICATE_READ)
    views = [services.certificates.show(read, c.serial) for c in issued]
    return IssuanceOut(card_number=issued[0].card_number,
                       certificates=[certificate_out(v) for v in views])


@router.post("/v1/stations/certificates", status_code=201, response_model=IssuanceOut,
             responses=problems(400, 404, 409, 422))
def issue(body: IssuanceIn, grant: Issue, services: ServicesDep) -> IssuanceOut:
    issued = services.issuance.issue(grant, body.resident_id, _requests(body), _card(body),
                                     proofing_id=body.proofing_id)
    return _out(issued, services, grant)


@router.post("/v1/stations/renewals", status_code=201, response_model=IssuanceOut,
             responses=problems(400, 404, 409, 422))
def renew(body: IssuanceIn, grant: Renew, services: ServicesDep) -> IssuanceOut:
    issued = services.issuance.renew(grant, body.resident_id, _requests(body), _card(body),
                                     proofing_id=body.proofing_id)
    return _out(issued, services, grant)


@router.post("/v1/operators/certificates/{serial}/revocation", response_model=RevocationOut,
             responses=problems(400, 404, 422))
def revoke(serial: Serial, body: RevocationIn, grant: Revoke,
           services: ServicesDep) -> RevocationOut:
    reason = RevocationReason.parse(body.reason)
    return revocation_out(services.revocation.revoke(grant, parse_serial(serial), reason))


@router.get("/v1/certificates/{serial}", response_model=CertificateOut,
            responses=problems(400, 404))
def show(serial: Serial, grant: Read, services: ServicesDep) -> CertificateOut:
    return certificate_out(services.certificates.show(grant, parse_serial(serial)))
