"""Smartphone certificates over HTTP: the holder's phone (requests signed with the card's or the
phone's keys — that signature is the authorisation) and the call centre (role callcenter)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from api.anonymous import RequestSource
from api.deps import ServicesDep, authorized
from api.openapi import problems
from api.request_fields import Serial
from api.routers.convert import revocation_out
from api.schemas import (
    ChallengeIn,
    ChallengeOut,
    CheckInOut,
    HoldIn,
    HoldOut,
    MobileCertificateOut,
    MobileIssuedOut,
    RevocationOut,
    SignedIn,
)
from jpki.access.authz import Grant, Operation
from jpki.mobile.service import MobileIssued
from jpki.mobile.sweep import MAX_REPORTS
from jpki.model import MobileSweepReport
from jpki.protocol.cms import InvalidSignedData
from jpki.serials import parse_serial

# The holder's requests carry no credentials (their signature is the authorisation): they are
# rate-limited per source address before they get here (api.anonymous).
router = APIRouter(tags=["mobile"])

Hold = Annotated[Grant[Literal[Operation.MOBILE_HOLD]], Depends(authorized(Operation.MOBILE_HOLD))]
HoldCertificate = Annotated[Grant[Literal[Operation.MOBILE_HOLD_CERTIFICATE]],
                            Depends(authorized(Operation.MOBILE_HOLD_CERTIFICATE))]
SweepRead = Annotated[Grant[Literal[Operation.MOBILE_SWEEP_READ]],
                      Depends(authorized(Operation.MOBILE_SWEEP_READ))]


class SweepCountsOut(BaseModel):
    revoked: int
    flagged: int
    held: int


class SweepOut(BaseModel):
    """One run of the layered measures (jpki.mobile.sweep). Device ids and serials only."""

    id: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str  # running | ok | failed | interrupted
    flag_after_days: int
    hold_after_days: int  # 0: silent devices are flagged only
    actor: str
    counts: SweepCountsOut


class SweepsOut(BaseModel):
    sweeps: list[SweepOut]


class SweepDetailOut(SweepOut):
    revoked: list[str]  # serials of the mobile certificates revoked
    flagged: list[str]  # ids of the devices flagged
    held: list[str]  # ids of the devices whose certificates were put on hold


def _sweep(report: MobileSweepReport) -> dict[str, object]:
    return {"id": report.id, "started_at": report.started_at,
            "finished_at": report.finished_at, "outcome": report.outcome,
            "flag_after_days": report.flag_after_days,
            "hold_after_days": report.hold_after_days, "actor": report.actor,
            "counts": SweepCountsOut(**report.counts)}


def _der(body: SignedIn) -> bytes:
    try:
        return base64.b64decode(body.signed_data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSignedData("signed_data must be base64") from exc


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode("ascii")


def _issued(result: MobileIssued, services: ServicesDep) -> MobileIssuedOut:
    out = [MobileCertificateOut(serial=cert.serial, kind=cert.kind.value,
                                not_after=cert.not_after, linked_to=result.linked.get(cert.serial),
                                pem=_pem(cert.der))
           for cert in result.certificates]
    return MobileIssuedOut(device_id=result.device_id, certificates=out,
                           chain=sorted({_pem(d) for d in result.chain}))


@router.post("/v1/mobile/challenges", status_code=201, response_model=ChallengeOut,
             responses=problems(503))
def new_challenge(body: ChallengeIn, source: RequestSource,
                  services: ServicesDep) -> ChallengeOut:
    """A single-use challenge, valid for minutes. Refused while the caller's source holds too
    many unused ones (429) or all sources together do (503), both with Retry-After."""
    challenge, expires = services.mobile.new_challenge(body.purpose, source)
    return ChallengeOut(challenge=base64.b64encode(challenge).decode("ascii"),
                        expires_at=expires)


@router.post("/v1/mobile/applications", status_code=201, response_model=MobileIssuedOut,
             responses=problems(400, 404, 409, 422, 503))
def apply(body: SignedIn, services: ServicesDep) -> MobileIssuedOut:
    """An application signed with the card's signing key (CMS SignedData over a
    `jpki-mobile-application/1` JSON document): issues both mobile certificates."""
    return _issued(services.mobile.apply(_der(body)), services)


@router.post("/v1/mobile/revocations", response_model=list[RevocationOut],
             responses=problems(400, 404, 422, 503))
def revoke(body: SignedIn, services: ServicesDep) -> list[RevocationOut]:
    return [revocation_out(r) for r in services.mobile.revoke(_der(body))]


@router.post("/v1/mobile/suspension-lifts", status_code=201, response_model=MobileIssuedOut,
             responses=problems(400, 404, 409, 422, 503))
def lift(body: SignedIn, services: ServicesDep) -> MobileIssuedOut:
    return _issued(services.mobile.lift_suspension(_der(body)), services)


@router.post("/v1/mobile/check-ins", response_model=CheckInOut,
             responses=problems(400, 404, 422, 503))
def check_in(body: SignedIn, services: ServicesDep) -> CheckInOut:
    """A device's periodic sign of life (signed with its auth key). The sweep flags a device
    silent past JPKI_MOBILE_FLAG_SILENT_DAYS and holds its certificates past
    JPKI_MOBILE_HOLD_SILENT_DAYS, until the holder lifts the hold from the phone."""
    device_id, at = services.mobile.check_in(_der(body))
    return CheckInOut(device_id=device_id, last_seen_at=at)


@router.post("/v1/callcenter/holds", response_model=HoldOut, responses=problems(404))
def hold(body: HoldIn, grant: Hold, services: ServicesDep) -> HoldOut:
    """A lost phone: both mobile certificates of the holder's device on hold at once; OCSP
    answers certificateHold within a second."""
    return HoldOut(held=[revocation_out(r)
                         for r in services.mobile.hold(grant, body.resident_id)])


@router.post("/v1/callcenter/certificates/{serial}/hold", response_model=RevocationOut,
             responses=problems(400, 404, 422))
def hold_certificate(serial: Serial, grant: HoldCertificate,
                     services: ServicesDep) -> RevocationOut:
    """One mobile certificate on hold; a card certificate is refused (403)."""
    return revocation_out(services.mobile.hold_certificate(grant, parse_serial(serial)))


@router.get("/v1/operators/mobile/sweeps", response_model=SweepsOut,
            responses=problems(422))
def sweeps(grant: SweepRead, services: ServicesDep,
           limit: Annotated[int, Query(ge=1, le=MAX_REPORTS)] = 20) -> SweepsOut:
    """The layered measures' newest runs (重層的な措置: the sweep `jpki serve` runs by itself),
    newest first: when, with which thresholds, and how many mobile certificates each revoked
    and devices it flagged and held. National operators only."""
    return SweepsOut(sweeps=[SweepOut(**_sweep(r))
                             for r in services.mobile_sweep.reports(grant, limit)])


@router.get("/v1/operators/mobile/sweeps/{sweep_id}", response_model=SweepDetailOut,
            responses=problems(404, 422))
def sweep(sweep_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], grant: SweepRead,
          services: ServicesDep) -> SweepDetailOut:
    """One run, with the serials it revoked and the ids of the devices it flagged and held."""
    report = services.mobile_sweep.report(grant, sweep_id)
    return SweepDetailOut(**_sweep(report), revoked=report.revoked,
                          flagged=report.flagged, held=report.held)
