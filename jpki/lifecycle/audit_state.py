"""The certificates' state replayed from the audit log (``jpki audit verify --state``).

The chain (jpki.audit) proves the *log*: no record changed, inserted or deleted. It proves
nothing about the rows the log describes — an UPDATE that un-revokes certificates leaves every
record and every MAC intact. This check replays the certificate transitions the log records and
compares the state they leave with every certificate row:

- ``certificate.signing``: the intent (jpki.issuance.service step 4): pending, not revoked;
- ``certificate.issued``: issued, with the payload's ``not_after``;
- ``certificate.abandoned``: abandoned, revoked ``unspecified`` at the payload's ``revoked_at``;
- ``certificate.revoked``: the payload's ``revoked_at`` and ``revocation_reason``;
- ``certificate.hold_released``: not revoked, released at the payload's ``hold_released_at``.

Besides, every row must have its ``certificate.signing`` record and an issued one its
``certificate.issued`` record; every certificate the log names must have a row; and each row's
stored CRL entry must be the entry of the row's own revocation, since CRLs copy it verbatim
(jpki.lifecycle.crl_entries).

Records written before their payloads named the state they leave lack some of it: an
abandonment its revocation time (the record's own time may miss it by the seconds the
transaction took), a hold release its time, a revocation the reason it left (the payload named
only the reason asked for). That reason is replayed with the rule that set it
(:func:`jpki.lifecycle.revocation.resulting_reason`); the times cannot be recovered, so those fields
are
counted as *not checkable from the log*, never passed as if checked.

Memory stays bounded on stores of millions of certificates: the serials are split into ranges of
``chunk`` certificates (``serial_boundary``); for each range the log is read once, in chain
order, for the records about serials in it, then the range's rows are read page by page and
compared. Only one range's expected states are ever held, and at most ``limit`` findings of each
kind are listed (all are counted). The caller's unit of work must read one snapshot of the
store (a ``snapshot`` unit of work of the store adapter), so that a change committed during the
check is seen in both the log and the rows, or in neither.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final, Literal

from jpki.errors import AuditStateMismatch
from jpki.lifecycle.crl_entries import crl_entry
from jpki.lifecycle.revocation import resulting_reason
from jpki.model import AuditRecord, CertificateStateRow, CertStatus, RevocationReason
from jpki.ports import UnitOfWork

SIGNING = "certificate.signing"
ISSUED = "certificate.issued"
ABANDONED = "certificate.abandoned"
REVOKED = "certificate.revoked"
HOLD_RELEASED = "certificate.hold_released"
ACTIONS = (SIGNING, ISSUED, ABANDONED, REVOKED, HOLD_RELEASED)

_REASONS = {r.rfc_name: r for r in RevocationReason if r is not RevocationReason.REMOVE_FROM_CRL}


class _Unknown(Enum):
    UNKNOWN = "not checkable from the log"


UNKNOWN: Final = _Unknown.UNKNOWN
_Time = datetime | None | Literal[_Unknown.UNKNOWN]
_Reason = RevocationReason | None | Literal[_Unknown.UNKNOWN]


class _Expected:
    """What the log says of one certificate so far."""

    __slots__ = ("issued", "last_action", "last_seq", "not_after", "reason", "released_at",
                 "revoked_at", "signed", "status")

    def __init__(self) -> None:
        self.signed = False
        self.issued = False
        self.status: CertStatus | None = None
        self.not_after: _Time = None
        self.revoked_at: _Time = None
        self.reason: _Reason = None
        self.released_at: _Time = None
        self.last_action = ""
        self.last_seq = 0

    def replay(self, record: AuditRecord) -> None:
        payload = _payload(record.payload)
        action = record.action
        if action == SIGNING:
            self.signed = True
            self.status = CertStatus.PENDING
            self.revoked_at = None
            self.reason = None
            self.released_at = None
        elif action == ISSUED:
            self.issued = True
            self.status = CertStatus.ISSUED
            self.not_after = _time(payload, "not_after")
        elif action == ABANDONED:
            self.status = CertStatus.ABANDONED
            self.revoked_at = _time(payload, "revoked_at")
            self.reason = RevocationReason.UNSPECIFIED
        elif action == REVOKED:
            self.revoked_at = _time(payload, "revoked_at")
            if "revocation_reason" in payload:
                self.reason = _reason(payload["revocation_reason"])
            else:
                self.reason = _replayed_reason(self.reason, _reason(payload.get("reason")))
        elif action == HOLD_RELEASED:
            self.revoked_at = None
            self.reason = None
            self.released_at = _time(payload, "hold_released_at")
        self.last_action = action
        self.last_seq = record.seq


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _time(payload: dict[str, Any], key: str) -> _Time:
    value = payload.get(key)
    if not isinstance(value, str):
        return UNKNOWN
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return UNKNOWN
    return at if at.tzinfo is not None else UNKNOWN


def _reason(value: Any) -> RevocationReason | Literal[_Unknown.UNKNOWN]:
    return _REASONS.get(value, UNKNOWN) if isinstance(value, str) else UNKNOWN


def _replayed_reason(old: _Reason,
                     requested: RevocationReason | Literal[_Unknown.UNKNOWN]) -> _Reason:
    """The reason an older "certificate.revoked" record left, from the reason it asked for."""
    if requested is UNKNOWN:
        return UNKNOWN
    if old is UNKNOWN:
        # Whatever the reason was, a compromise found replaces it; nothing else is certain.
        return requested if requested is RevocationReason.KEY_COMPROMISE else UNKNOWN
    return resulting_reason(old, requested)


# --- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    serial: str
    field: str
    expected: str | None
    found: str | None


@dataclass(frozen=True)
class Unrecorded:
    """A certificate row whose creation (or issuance) the log does not record."""

    serial: str
    status: str
    missing: tuple[str, ...]  # the actions without a record


@dataclass(frozen=True)
class WithoutRow:
    """A certificate the log names but the store no longer holds."""

    serial: str
    last_action: str
    seq: int


@dataclass
class StateReport:
    limit: int = 1_000
    certificates: int = 0  # rows compared
    records: int = 0  # certificate records replayed
    mismatch_count: int = 0
    unrecorded_count: int = 0
    without_row_count: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    unrecorded: list[Unrecorded] = field(default_factory=list)
    without_row: list[WithoutRow] = field(default_factory=list)
    # field → certificates whose value for it the log cannot tell (older records)
    not_checkable: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.mismatch_count or self.unrecorded_count or self.without_row_count)

    def summary(self) -> str:
        return (f"{self.certificates} certificates against {self.records} records: "
                f"{self.mismatch_count} mismatches, {self.unrecorded_count} without their "
                f"issuance record, {self.without_row_count} named in the log without a row")

    def raise_if_mismatched(self) -> None:
        if not self.ok:
            raise AuditStateMismatch(
                f"the certificates differ from the audit log: {self.mismatch_count} "
                f"mismatches, {self.unrecorded_count} without their issuance record, "
                f"{self.without_row_count} named in the log without a row",
                mismatches=self.mismatch_count, unrecorded=self.unrecorded_count,
                without_row=self.without_row_count)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "certificates": self.certificates, "records": self.records,
            "mismatch_count": self.mismatch_count,
            "mismatches": [vars(m) for m in self.mismatches],
            "without_issuance_record_count": self.unrecorded_count,
            "without_issuance_record": [{"serial": u.serial, "status": u.status,
                                         "missing": list(u.missing)} for u in self.unrecorded],
            "without_row_count": self.without_row_count,
            "without_row": [vars(w) for w in self.without_row],
            "not_checkable": dict(self.not_checkable), "listed_at_most": self.limit,
        }

    # --- findings ---

    def _mismatch(self, serial: str, name: str, expected: object, found: object) -> None:
        self.mismatch_count += 1
        if len(self.mismatches) < self.limit:
            self.mismatches.append(Mismatch(serial, name, _text(expected), _text(found)))

    def _field(self, serial: str, name: str, expected: object, found: object) -> None:
        if expected is UNKNOWN:
            self.not_checkable[name] = self.not_checkable.get(name, 0) + 1
        elif expected != found:
            self._mismatch(serial, name, expected, found)

    def _unrecorded(self, row: CertificateStateRow, missing: tuple[str, ...]) -> None:
        self.unrecorded_count += 1
        if len(self.unrecorded) < self.limit:
            self.unrecorded.append(Unrecorded(row.serial, row.status.value, missing))

    def _without_row(self, serial: str, expected: _Expected) -> None:
        self.without_row_count += 1
        if len(self.without_row) < self.limit:
            self.without_row.append(WithoutRow(serial, expected.last_action,
                                               expected.last_seq))

    def compare(self, row: CertificateStateRow, expected: _Expected | None) -> None:
        self.certificates += 1
        signed = expected is not None and expected.signed
        missing: tuple[str, ...] = () if signed else (SIGNING,)
        if row.status is CertStatus.ISSUED and not (expected is not None and expected.issued):
            missing += (ISSUED,)
        if missing:
            self._unrecorded(row, missing)
        if expected is not None and signed:
            s = row.serial
            self._field(s, "status", expected.status, row.status)
            self._field(s, "revoked_at", expected.revoked_at, row.revoked_at)
            self._field(s, "revocation_reason", expected.reason, row.revocation_reason)
            self._field(s, "hold_released_at", expected.released_at, row.hold_released_at)
            if expected.issued:
                self._field(s, "not_after", expected.not_after, row.not_after)
        # The entry CRLs copy must be the row's own revocation (checked against the log above).
        entry = None if row.revoked_at is None else crl_entry(row.serial, row.revoked_at,
                                                              row.revocation_reason)
        if entry != row.crl_entry:
            self._mismatch(row.serial, "crl_entry", entry, row.crl_entry)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, RevocationReason):
        return value.rfc_name
    if isinstance(value, CertStatus):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


# --- the replay ---------------------------------------------------------------------------


def verify_state(uow: UnitOfWork, *, chunk: int = 100_000, batch: int = 5_000,
                 limit: int = 1_000) -> StateReport:
    """Replay the log's certificate transitions and compare them with every certificate row.

    ``uow`` must read one snapshot (see the module docstring); the chain itself is
    :meth:`jpki.audit.AuditLog.verify`'s to check, in the same unit of work, first.
    """
    if chunk < 1 or batch < 1:
        raise ValueError("chunk and batch are positive")
    report = StateReport(limit=limit)
    after: str | None = None
    while True:
        upto = uow.certificates.serial_boundary(after, chunk)  # None: to the last serial
        expected: dict[str, _Expected] = {}
        for record in uow.audit.about_subjects(ACTIONS, after, upto, batch):
            report.records += 1
            state = expected.get(record.subject)
            if state is None:
                state = expected[record.subject] = _Expected()
            state.replay(record)
        for row in uow.certificates.state_rows(after, upto, batch):
            report.compare(row, expected.pop(row.serial, None))
        for serial, state in expected.items():
            report._without_row(serial, state)
        if upto is None:
            return report
        after = upto
