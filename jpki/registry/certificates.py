"""Read-side view of one certificate: status, validity, revocation and linkage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from jpki.access.authz import Grant, Operation
from jpki.errors import CertificateNotFound, ResidentNotFound
from jpki.model import Certificate, CertStatus
from jpki.ports import Clock
from jpki.registry.ports import (
    CertificateQueryUnitOfWork,
    CertificateQueryUnitOfWorkFactory,
)


@dataclass(frozen=True)
class CertificateView:
    serial: str
    kind: str
    status: str  # good | revoked | expired | pending | abandoned
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    predecessor: str | None
    successor: str | None
    sibling: str | None
    shard: str
    issuer: str
    resident_id: str
    der: bytes | None
    # Issued for a station, not yet confirmed on the card nor revoked (architecture §3.5).
    awaiting_delivery: bool = False


def status_of(cert: Certificate, now: datetime) -> str:
    if cert.status is CertStatus.PENDING:
        return "pending"
    if cert.status is CertStatus.ABANDONED:
        return "abandoned"
    if cert.is_revoked(now):
        return "revoked"
    if now > cert.not_after:
        return "expired"
    return "good"


def view_of(uow: CertificateQueryUnitOfWork, cert: Certificate, now: datetime) -> CertificateView:
    def serial(cert_id: int | None) -> str | None:
        if cert_id is None:
            return None
        other = uow.certificates.get(cert_id)
        return other.serial if other else None

    successor = uow.certificates.successor_of(cert.id or 0)
    gen = uow.cas.get(cert.ca_generation_id)
    revoked = cert.is_revoked(now)
    return CertificateView(
        serial=cert.serial, kind=cert.kind.value, status=status_of(cert, now),
        not_before=cert.not_before, not_after=cert.not_after,
        revoked_at=cert.revoked_at if revoked else None,
        revocation_reason=cert.revocation_reason.rfc_name
        if revoked and cert.revocation_reason is not None else None,
        predecessor=serial(cert.predecessor_id),
        successor=successor.serial if successor else None,
        sibling=serial(cert.sibling_id), shard=cert.shard,
        issuer=f"{gen.ca.value}/g{gen.generation:02d}" if gen else "",
        resident_id=cert.resident_id, der=cert.der,
        awaiting_delivery=cert.status is CertStatus.ISSUED and cert.delivery_required
        and cert.delivered_at is None and cert.revoked_at is None)


class CertificateQueries:
    def __init__(self, uow_factory: CertificateQueryUnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow_factory
        self._clock = clock

    def show(self, grant: Grant[Literal[Operation.CERTIFICATE_READ]],
             serial: str) -> CertificateView:
        grant.require(Operation.CERTIFICATE_READ)
        with self._uow() as uow:
            cert = uow.certificates.get_by_serial(serial)
            if cert is None:
                raise CertificateNotFound(f"no certificate with serial {serial}", serial=serial)
            resident = uow.residents.get(cert.resident_id)
            if resident is not None:
                grant.require_municipality(resident.municipality_code)
            return view_of(uow, cert, self._clock.now())

    def of_resident(self, grant: Grant[Literal[Operation.CERTIFICATE_READ]],
                    resident_id: str) -> list[CertificateView]:
        """A resident's certificates, newest first (those never issued left out)."""
        grant.require(Operation.CERTIFICATE_READ)
        with self._uow() as uow:
            resident = uow.residents.get(resident_id[:64])
            if resident is None:
                raise ResidentNotFound("no resident with this id", resident=resident_id[:64])
            grant.require_municipality(resident.municipality_code)
            now = self._clock.now()
            return [view_of(uow, cert, now)
                    for cert in reversed(uow.certificates.for_resident(resident.id))
                    if cert.status is CertStatus.ISSUED]
