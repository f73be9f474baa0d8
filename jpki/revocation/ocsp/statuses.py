"""What an OCSP response says about a certificate (RFC 6960 §2.2), as typed values, and whether a
signed response still says what the store says.

A status is :class:`Good` (perhaps with a revocation scheduled for later: an emigrant's departure
date, which caps the response's nextUpdate), :class:`Revoked` (time and reason), or
:data:`UNKNOWN` (no certificate of ours from that issuer). The rule that turns a certificate's
row into one is :func:`status_of`; the relying-party status API applies the same rule
(jpki.relying_parties.status_lookup).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography.x509 import ocsp as c_ocsp

from jpki.model import CertStatus, RevocationReason, StatusRow


@dataclass(frozen=True, slots=True)
class Good:
    """Good now; ``revocation_scheduled_at``, when set, is the later instant a recorded
    revocation takes effect: no "good" answer may be valid past it (architecture §5.5)."""

    revocation_scheduled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Revoked:
    at: datetime
    reason: RevocationReason | None

    @property
    def wire_reason(self) -> RevocationReason | None:
        """The reason as the response carries it: RFC 5280 §5.3.1 omits ``unspecified``."""
        return None if self.reason is RevocationReason.UNSPECIFIED else self.reason


@dataclass(frozen=True, slots=True)
class Unknown:
    pass


OcspStatus = Good | Revoked | Unknown
GOOD = Good()
UNKNOWN = Unknown()


class _HasStatus(Protocol):
    @property
    def status(self) -> CertStatus: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def revocation_reason(self) -> RevocationReason | None: ...


def status_of(cert: _HasStatus, now: datetime) -> Good | Revoked:
    """The status of a certificate (or its status row) at ``now``. A revocation may be recorded
    ahead of its date (Certificate.is_revoked): revoked from that instant, good until then; an
    abandoned issuance intent is revoked from the instant it was abandoned (architecture §3.3)."""
    at = cert.revoked_at
    if at is not None and (at <= now or cert.status is CertStatus.ABANDONED):
        return Revoked(at, cert.revocation_reason)
    if cert.status is CertStatus.ABANDONED:
        # set_revocation stamps every abandonment (jpki.issuance.service): a row without a time
        # is damaged, and no answer is better than a made-up revocation time.
        raise ValueError("an abandoned certificate without a revocation time")
    return GOOD if at is None else Good(at)


def expected(row: StatusRow | None, generation_id: int, now: datetime) -> OcspStatus:
    """What a response about ``row``'s serial, asked of CA generation ``generation_id``, must say
    at ``now``: unknown when the serial is not ours or is another generation's."""
    if row is None or row.ca_generation_id != generation_id:
        return UNKNOWN
    return status_of(row, now)


def contradiction(der: bytes, status: OcspStatus) -> str | None:
    """Why the signed single-certificate response ``der`` tells a client something other than
    ``status``, or None when it agrees. A "good" response agrees only if it expires no later
    than a scheduled revocation."""
    try:
        response = c_ocsp.load_der_ocsp_response(der)
        if response.response_status is not c_ocsp.OCSPResponseStatus.SUCCESSFUL:
            return "not a successful response"
        single = next(iter(response.responses))
    except (ValueError, StopIteration):
        return "not a single-certificate OCSP response"
    said = single.certificate_status
    match status:
        case Unknown():
            return None if said is c_ocsp.OCSPCertStatus.UNKNOWN else \
                f"says {said.name.lower()}, the store knows no such certificate of this issuer"
        case Good(scheduled):
            if said is not c_ocsp.OCSPCertStatus.GOOD:
                return f"says {said.name.lower()}, the store says good"
            next_update = single.next_update_utc
            if scheduled is not None and (next_update is None or next_update > scheduled):
                return "says good past the scheduled revocation"
            return None
        case Revoked():
            if said is not c_ocsp.OCSPCertStatus.REVOKED:
                return f"says {said.name.lower()}, the store says revoked"
            if single.revocation_time_utc != status.at:
                return "gives another revocation time"
            given = single.revocation_reason.value if single.revocation_reason is not None \
                else None
            wanted = status.wire_reason.rfc_name if status.wire_reason is not None else None
            if given != wanted:
                return "gives another revocation reason"
            return None
