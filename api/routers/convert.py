"""Domain results → response schemas."""

from __future__ import annotations

from datetime import UTC, date, datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from api.schemas import CertificateOut, ResidentOut, RevocationOut
from jpki.lifecycle.revocation import RevocationResult
from jpki.model import Resident
from jpki.registry.certificates import CertificateView
from jpki.validity import may_hold_signing_certificate


def pem_of(der: bytes | None) -> str | None:
    if not der:
        return None
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode("ascii")


def utc(instant: datetime | None) -> datetime | None:
    """Every instant the API answers is in UTC (``...Z``): the domain may hand back another
    offset (an emigrant's revocation takes effect at 00:00 JST of the departure date)."""
    return instant.astimezone(UTC) if instant is not None else None


def certificate_out(view: CertificateView) -> CertificateOut:
    return CertificateOut(serial=view.serial, kind=view.kind, status=view.status,
                          not_before=view.not_before.astimezone(UTC),
                          not_after=view.not_after.astimezone(UTC),
                          revoked_at=utc(view.revoked_at),
                          revocation_reason=view.revocation_reason,
                          predecessor=view.predecessor, successor=view.successor,
                          sibling=view.sibling, shard=view.shard, issuer=view.issuer,
                          pem=pem_of(view.der))


def revocation_out(r: RevocationResult) -> RevocationOut:
    return RevocationOut(serial=r.serial, reason=r.reason.rfc_name,
                         revoked_at=r.revoked_at.astimezone(UTC), changed=r.changed)


def resident_out(r: Resident, *, with_basic4: bool, today: date) -> ResidentOut:
    """The resident record; the basic 4 information only ``with_basic4`` (operators). Without it
    the fields are left unset, and the routes (``response_model_exclude_unset``) leave them out of
    the JSON altogether rather than sending them as null. ``today`` (JST) is required: without
    it ``signing_eligible`` could only be guessed, and a registration once answered false for an
    adult whom the next GET called eligible."""
    fields: dict[str, object] = {
        "id": r.id, "municipality_code": r.municipality_code,
        "registry_source": r.registry_source.value, "status": r.status.value,
        "dv_support": r.dv_support, "emigrated_on": r.emigrated_on,
        "signing_eligible": may_hold_signing_certificate(r.birth_date, today)}
    if with_basic4:
        fields.update(name=r.name, birth_date=r.birth_date, sex=r.sex, address=r.address)
        if r.name_kana is not None:
            fields["name_kana"] = r.name_kana
    return ResidentOut.model_validate(fields)
