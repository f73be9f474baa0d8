"""Batch status lookups for relying parties (POST /v1/status, scope ``status``).

Up to :data:`MAX_BATCH` serials per call; for each, the status **OCSP gives** (jpki.ocsp) and the
CRLs carry:

- ``revoked`` — revoked or on hold at this instant (reason ``certificateHold`` for a hold), or an
  issuance intent that was abandoned (OCSP answers those as revoked, reason unspecified, from the
  instant they were abandoned; DESIGN.md §3);
- ``good`` — anything else we issued, including a certificate whose revocation is scheduled for
  a later instant (an emigrant's departure date) and one whose hold was released; an intent still
  being signed is ``good`` too, as OCSP answers it;
- ``unknown`` — no certificate of ours has this serial.

Besides OCSP's answer each result says what the certificate is — ``form`` (card or mobile) and
``usage`` (sign or auth) — and its notAfter, with ``expired`` for one past it: OCSP keeps
answering ``good`` for an expired, unrevoked certificate (RFC 6960 §2.2 leaves it to the CA) and
the CRLs stop listing revoked ones after expiry, so the relying party checks validity itself.

One call reads every serial in one statement, in a read-only unit of work, and is audited once
(count, unknown count and a SHA-256 of the request's serials, never the list: a batch of 1,000
would swell the chain) before the answer leaves — in a group commit shared with concurrent
calls (jpki.group_audit).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from jpki.audit import AuditLog
from jpki.errors import InvalidInput, InvalidSerial, TooLarge
from jpki.group_audit import GroupAudit
from jpki.model import CertStatus, StatusRow
from jpki.ports import Clock, UnitOfWorkFactory
from jpki.relying_parties import RpContext
from jpki.serials import parse_serial

MAX_BATCH = 1000
_CANONICAL = re.compile(r"[1-9a-f][0-9a-f]{0,39}")
SCOPE = "status"


class BatchTooLarge(TooLarge):
    code = "status.batch_too_large"
    title = "Too many serials in one call"


class EmptyBatch(InvalidInput):
    code = "status.batch_empty"
    title = "No serial to look up"


class SerialStatus(NamedTuple):  # a tuple: up to 1,000 of them are made per call
    serial: str
    status: str  # good | revoked | unknown
    reason: str | None  # RFC 5280 CRLReason name, when revoked
    revoked_at: datetime | None
    form: str | None  # card | mobile
    usage: str | None  # sign | auth
    not_after: datetime | None
    expired: bool | None


@dataclass(frozen=True)
class StatusAnswer:
    produced_at: datetime
    results: list[SerialStatus]


def status_for(serial: str, row: StatusRow | None, now: datetime) -> SerialStatus:
    """OCSP's answer for one serial (the rule of jpki.ocsp._status_of), plus what it is."""
    if row is None:
        return SerialStatus(serial=serial, status="unknown", reason=None, revoked_at=None,
                            form=None, usage=None, not_after=None, expired=None)
    revoked = row.status is CertStatus.ABANDONED or (
        row.revoked_at is not None and row.revoked_at <= now)
    return SerialStatus(
        serial=serial, status="revoked" if revoked else "good",
        reason=row.revocation_reason.rfc_name if revoked and row.revocation_reason is not None
        else None,
        revoked_at=row.revoked_at if revoked else None,
        form="mobile" if row.kind.is_mobile else "card",
        usage="sign" if row.kind.is_signing else "auth",
        not_after=row.not_after, expired=now > row.not_after)


def canonical_serials(serials: list[str]) -> list[str]:
    if not serials:
        raise EmptyBatch("send 1 to 1,000 serials", field="serials")
    if len(serials) > MAX_BATCH:
        raise BatchTooLarge(f"at most {MAX_BATCH} serials per call", limit=MAX_BATCH,
                            received=len(serials))
    out = []
    for index, text in enumerate(serials):
        if isinstance(text, str) and _CANONICAL.fullmatch(text):
            out.append(text)  # already lower-case hex without leading zeros
            continue
        try:
            out.append(parse_serial(text) if isinstance(text, str) else parse_serial(""))
        except InvalidSerial as exc:
            raise InvalidSerial(exc.detail, field="serials", index=index) from exc
    return out


class StatusLookup:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, audit: AuditLog,
                 read_uow: UnitOfWorkFactory | None = None,
                 group: GroupAudit | None = None) -> None:
        self._read_uow = read_uow or uow_factory
        self._clock = clock
        self._group = group or GroupAudit(uow_factory, audit)

    def lookup(self, ctx: RpContext, purpose: str, serials: list[str]) -> StatusAnswer:
        ctx.principal.require_scope(SCOPE)
        purpose = ctx.require_purpose(purpose)
        wanted = canonical_serials(serials)
        digest = hashlib.sha256("\n".join(wanted).encode("ascii")).hexdigest()
        # Read in a read-only unit of work (on SQLite it does not queue behind the writer),
        # then audit; the answer leaves only after its audit record has committed.
        with self._read_uow() as uow:
            now = self._clock.now()
            rows = {r.serial: r for r in uow.certificates.status_rows(sorted(set(wanted)))}
        results = [status_for(s, rows.get(s), now) for s in wanted]
        self._group.record(actor=ctx.actor, action="rp.status", subject=ctx.rp_id,
                           payload={"purpose": purpose, "count": len(wanted),
                                    "unknown": sum(r.status == "unknown" for r in results),
                                    "serials_sha256": digest})
        return StatusAnswer(produced_at=now, results=results)
