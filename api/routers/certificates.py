"""Certificates: issuance and renewal (station role), revocation (operator), lookup."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import OperatorDep, ReaderDep, ServicesDep, StationDep
from api.openapi import problems
from api.request_fields import Serial
from api.routers.convert import certificate_out, revocation_out
from api.schemas import CertificateOut, IssuanceIn, IssuanceOut, RevocationIn, RevocationOut
from jpki.errors import InvalidInput
from jpki.issuance.service import IssuedCertificate, KeyRequest
from jpki.lifecycle.cards import CardSpec
from jpki.model import CertKind, RevocationReason
from jpki.serials import parse_serial

router = APIRouter(tags=["certificates"])


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


def _out(issued: list[IssuedCertificate], services: ServicesDep, actor: StationDep) -> IssuanceOut:
    views = [services.certificates.show(actor, c.serial) for c in issued]
    return IssuanceOut(card_number=issued[0].card_number,
                       certificates=[certificate_out(v) for v in views])


@router.post("/v1/stations/certificates", status_code=201, response_model=IssuanceOut,
             responses=problems(400, 404, 409, 422))
def issue(body: IssuanceIn, actor: StationDep, services: ServicesDep) -> IssuanceOut:
    issued = services.issuance.issue(actor, body.resident_id, _requests(body), _card(body),
                                     proofing_id=body.proofing_id)
    return _out(issued, services, actor)


@router.post("/v1/stations/renewals", status_code=201, response_model=IssuanceOut,
             responses=problems(400, 404, 409, 422))
def renew(body: IssuanceIn, actor: StationDep, services: ServicesDep) -> IssuanceOut:
    issued = services.issuance.renew(actor, body.resident_id, _requests(body), _card(body),
                                     proofing_id=body.proofing_id)
    return _out(issued, services, actor)


@router.post("/v1/operators/certificates/{serial}/revocation", response_model=RevocationOut,
             responses=problems(400, 404, 422))
def revoke(serial: Serial, body: RevocationIn, actor: OperatorDep,
           services: ServicesDep) -> RevocationOut:
    reason = RevocationReason.parse(body.reason)
    return revocation_out(services.revocation.revoke(actor, parse_serial(serial), reason))


@router.get("/v1/certificates/{serial}", response_model=CertificateOut,
            responses=problems(400, 404))
def show(serial: Serial, actor: ReaderDep, services: ServicesDep) -> CertificateOut:
    return certificate_out(services.certificates.show(actor, parse_serial(serial)))
