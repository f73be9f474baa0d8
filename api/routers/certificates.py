"""Certificates: issuance and renewal (station role), revocation (operator), lookup."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from api.deps import ServicesDep, authorized
from api.openapi import problems
from api.problems import STATUS, error_body
from api.request_fields import Serial
from api.routers.convert import certificate_out, revocation_out
from api.schemas import (
    BatchItemOut,
    CertificateOut,
    IssuanceBatchIn,
    IssuanceBatchOut,
    IssuanceIn,
    IssuanceOut,
    RevocationIn,
    RevocationOut,
)
from jpki.access.authz import Grant, Operation, authorize
from jpki.errors import Category, InvalidInput, JpkiError
from jpki.issuance.card import validate as validate_order
from jpki.issuance.service import IssuanceOrder, IssuedCertificate, KeyRequest
from jpki.lifecycle.cards import CardSpec
from jpki.model import CertKind, RevocationReason
from jpki.serials import parse_serial

router = APIRouter(tags=["certificates"])

Issue = Annotated[Grant[Literal[Operation.CERTIFICATE_ISSUE]],
                  Depends(authorized(Operation.CERTIFICATE_ISSUE))]
IssueBatch = Annotated[Grant[Literal[Operation.CERTIFICATE_ISSUE_BATCH]],
                       Depends(authorized(Operation.CERTIFICATE_ISSUE_BATCH))]
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
         grant: Grant[Literal[Operation.CERTIFICATE_ISSUE, Operation.CERTIFICATE_RENEW,
                              Operation.CERTIFICATE_ISSUE_BATCH]]
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


@router.post("/v1/stations/certificate-batches", response_model=IssuanceBatchOut,
             responses=problems(400, 422))
def issue_batch(body: IssuanceBatchIn, grant: IssueBatch,
                services: ServicesDep) -> IssuanceBatchOut:
    """Each order as POST /v1/stations/certificates would issue it, through the bulk path (one
    intent and one store transaction per chunk, the HSM signing a chunk while the next is
    built). A malformed order (a key that is no public key, keys of one kind twice) refuses the
    whole request, before anything is issued, with its index in the problem's context. Then 200
    with one result per order, in order: an order a rule or the state refuses is answered with
    its problem and leaves nothing behind; the others are issued."""
    orders = []
    for index, item in enumerate(body.orders):
        try:
            order = IssuanceOrder(item.resident_id, tuple(_requests(item)), _card(item),
                                  proofing_id=item.proofing_id)
            validate_order(order)
        except JpkiError as exc:
            if exc.category is Category.INVALID_INPUT:
                exc.detail = f"order {index}: {exc.detail}"
                exc.context["order"] = index
                raise
        orders.append(order)
    results = []
    for outcome in services.issuance.issue_batch(grant, orders):
        if isinstance(outcome, JpkiError):
            results.append(BatchItemOut(status=STATUS[outcome.category],
                                        problem=error_body(outcome)))
        else:
            results.append(BatchItemOut(status=201, issued=_out(outcome, services, grant)))
    return IssuanceBatchOut(results=results)


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
