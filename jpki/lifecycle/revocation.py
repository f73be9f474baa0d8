"""Revocation rules: the transitions of a certificate's revocation state, and their one writer.

Every context that revokes (the operator, resident and card events, renewal, mobile) goes
through :func:`revoke_in`; the operator's own revocation is jpki.revocation.service.

A revocation is acknowledged only after its unit of work commits (the store runs SQLite with
``synchronous=FULL`` and PostgreSQL with its default durable commit), so an acknowledged revocation
survives a killed process (non-negotiable 4). Revoking twice is harmless: the second call reports
the existing revocation.

Transitions (RFC 5280 §5.3.1; reference §3.2):

- not revoked → revoked with any reason except removeFromCRL (a CRL-only pseudo reason);
- certificateHold → a permanent reason: the hold date stays the revocation date;
- any reason → keyCompromise (a later finding of compromise must reach relying parties);
- a revocation scheduled for a future instant (emigration on the departure date) may be brought
  forward, never pushed back;
- anything else leaves the certificate as it is.

Releasing a hold is not here: card holds are never released (§3.2), and mobile holds have their
own rules (jpki.mobile.service).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from jpki.access.principals import Principal
from jpki.audit import AuditLog
from jpki.errors import HoldNotReleasable
from jpki.lifecycle.crl_entries import crl_entry
from jpki.model import Certificate, CertStatus, RevocationReason
from jpki.ports import AuditedWork


@dataclass(frozen=True)
class RevocationResult:
    serial: str
    reason: RevocationReason
    revoked_at: datetime
    changed: bool
    cascaded: tuple[RevocationResult, ...] = ()  # linked mobile certificates revoked with it

    def all(self) -> list[RevocationResult]:
        """This revocation and those it cascaded to, when they changed anything."""
        return ([self] if self.changed else []) + [r for c in self.cascaded for r in c.all()]


def apply_revocation(cert: Certificate, reason: RevocationReason, revoked_at: datetime,
                     recorded_at: datetime) -> bool:
    """Change ``cert``'s revocation state per the rules above; True when anything changed."""
    if reason is RevocationReason.REMOVE_FROM_CRL:
        raise ValueError("removeFromCRL is not a revocation reason")
    if cert.status is CertStatus.ABANDONED:
        return False  # already treated as revoked (destroyed before delivery)
    if cert.revoked_at is None or cert.revocation_reason is None:
        set_revocation(cert, revoked_at, reason, recorded_at)
        return True
    changed = False
    if revoked_at < cert.revoked_at and cert.revoked_at > recorded_at:
        cert.revoked_at = revoked_at  # bring a scheduled revocation forward
        changed = True
    resulting = resulting_reason(cert.revocation_reason, reason)
    if resulting is not cert.revocation_reason:
        cert.revocation_reason = resulting
        changed = True
    if changed:
        set_revocation(cert, cert.revoked_at, cert.revocation_reason or reason, recorded_at)
    return changed


def resulting_reason(old: RevocationReason | None,
                     requested: RevocationReason) -> RevocationReason:
    """The reason a certificate carries after a revocation asked with ``requested``: that one
    for a certificate not revoked, a hold made permanent or a compromise found; otherwise the
    reason it had (a scheduled revocation brought forward keeps it). The audit replay
    (jpki.lifecycle.audit_state) applies the same rule to records that name only the requested
    reason."""
    if old is None:
        return requested
    hold_made_permanent = (old is RevocationReason.CERTIFICATE_HOLD
                           and requested is not RevocationReason.CERTIFICATE_HOLD)
    compromise_found = (requested is RevocationReason.KEY_COMPROMISE
                        and old is not RevocationReason.KEY_COMPROMISE)
    return requested if hold_made_permanent or compromise_found else old


def set_revocation(cert: Certificate, revoked_at: datetime, reason: RevocationReason,
                   recorded_at: datetime) -> None:
    """The one place that writes a revocation, so the stored CRL entry always matches it."""
    cert.revoked_at = revoked_at
    cert.revocation_reason = reason
    cert.revocation_recorded_at = recorded_at
    cert.crl_entry = crl_entry(cert.serial, revoked_at, reason)


def release_hold(cert: Certificate, at: datetime) -> None:
    """Lift a certificateHold (RFC 5280 §5.3.1). Card holds are never released (§3.2): a found
    card's certificates are revoked and re-issued instead; only mobile holds are lifted."""
    if not cert.kind.is_mobile:
        raise HoldNotReleasable("a card certificate's hold is never released",
                                serial=cert.serial)
    if cert.revocation_reason is not RevocationReason.CERTIFICATE_HOLD:
        raise HoldNotReleasable("the certificate is not on hold", serial=cert.serial)
    cert.revoked_at = None
    cert.revocation_reason = None
    cert.revocation_recorded_at = at
    cert.crl_entry = None
    cert.hold_released_at = at


class LinkedCertificates(Protocol):
    def linked_to(self, cert_id: int) -> Sequence[Certificate]:
        """The mobile certificates linked to this card certificate (the cascade below)."""
        ...


class RevocationWork(AuditedWork, Protocol):
    """What :func:`revoke_in` reads and writes besides the certificate it is given: the
    certificates linked to it, and the audit chain (architecture §2.3: narrow ports)."""

    @property
    def certificates(self) -> LinkedCertificates: ...


def revoke_in(uow: RevocationWork, audit: AuditLog, actor: Principal, cert: Certificate,
              reason: RevocationReason, revoked_at: datetime, recorded_at: datetime,
              cause: str) -> RevocationResult:
    """Revoke inside the caller's unit of work and audit it; the caller commits."""
    changed = apply_revocation(cert, reason, revoked_at, recorded_at)
    cascaded: list[RevocationResult] = []
    if changed:
        # "reason" is what was asked; "revoked_at" and "revocation_reason" are the state the
        # certificate is left in, which `jpki audit verify --state` replays
        # (jpki.lifecycle.audit_state).
        assert cert.revoked_at is not None and cert.revocation_reason is not None
        audit.record(uow, actor=actor.actor, action="certificate.revoked", subject=cert.serial,
                     payload={"kind": cert.kind.value, "reason": reason.rfc_name,
                              "revoked_at": cert.revoked_at.isoformat(),
                              "revocation_reason": cert.revocation_reason.rfc_name,
                              "cause": cause})
        if not cert.kind.is_mobile and cert.id is not None:
            # reference §2 (移動端末設備用電子証明書): a mobile certificate is managed linked to
            # the card certificate and revoked with it — for any reason, in the same transaction.
            for mobile in uow.certificates.linked_to(cert.id):
                if mobile.not_after >= recorded_at:
                    cascaded.append(revoke_in(uow, audit, actor, mobile,
                                              cert.revocation_reason or reason,
                                              cert.revoked_at or revoked_at, recorded_at,
                                              cause=f"linked card certificate {cert.serial}"))
    assert cert.revocation_reason is not None and cert.revoked_at is not None
    return RevocationResult(serial=cert.serial, reason=cert.revocation_reason,
                            revoked_at=cert.revoked_at, changed=changed,
                            cascaded=tuple(cascaded))

