"""The audit log: an append-only, keyed hash chain.

Each record's ``mac`` is HMAC-SHA-256, computed *inside the HSM* with a non-extractable key, over
the previous record's mac and this record's canonical content. So:

- a changed row no longer matches its mac;
- an inserted or deleted row breaks the sequence numbers and the chain of ``prev_mac``;
- a truncated tail disagrees with the head row, which the same transaction updates;
- and, unlike a plain hash chain, nobody with only database access can recompute the chain after
  tampering, because the key never leaves the token (Dogtag signs its audit log for the same
  reason; architecture §11 [D5]).

What the chain cannot show on its own is a rollback of the *whole* database to an earlier state
(head included): ``jpki audit verify`` prints the head so operators can record it elsewhere and
pass it back with ``--expect-head``.

Records are staged in the unit of work of the state change they describe and appended when it
commits, so a change and its audit records commit or roll back together. The head row is locked
for the append, which serialises writers at the end of their transactions only, and a
transaction's records are written with one batched INSERT.

The relying-party calls' group commit (jpki.group_audit) appends its batches outside any unit of
work, on a connection of the store's own (jpki.store.audit_writer), with the same head lock; its
records are numbered and MACed here (:meth:`AuditLog.chained`), like everyone's, so a chain
written by both writers is one chain.

Payloads never carry personal data (architecture §9.7): identifiers, serials, codes.

Each record also names the request (or job run) that caused it, when there was one
(jpki.correlation), so that an operator can go from a log line to the records and back. The MAC
covers it — but only for records that have one: the content of a record without a request id is
exactly what it was before request ids existed, so chains written earlier still verify, while
adding, changing or removing a request id on any record breaks its MAC (the content is a JSON
array of six elements without one and of seven with one, so the two forms cannot collide).

Once a transaction has committed its records, they are passed to the telemetry port
(jpki.telemetry), from which the composition root derives its counters.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from jpki.correlation import current_request_id
from jpki.errors import AuditChainBroken
from jpki.model import AuditRecord
from jpki.ports import AuditedWork, Clock, KeyStore, UnitOfWork
from jpki.telemetry import NO_TELEMETRY, Telemetry

GENESIS_MAC = "0" * 64

JsonValue = str | int | bool | None | Sequence[str] | Sequence[int]

# Keys that would only ever hold personal data: refusing them catches a careless caller early.
_FORBIDDEN_KEYS = frozenset({"name", "address", "birth_date", "birth", "sex", "basic4",
                             "date_of_birth", "gender"})


def canonical_content(seq: int, record_at: str, actor: str, action: str, subject: str,
                      payload: str, request_id: str | None = None) -> bytes:
    fields: list[int | str] = [seq, record_at, actor, action, subject, payload]
    if request_id is not None:
        # Only records that carry one: the content of the others is unchanged (module doc).
        fields.append(request_id)
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def canonical_payload(payload: Mapping[str, JsonValue]) -> str:
    bad = _FORBIDDEN_KEYS.intersection(payload)
    if bad:
        raise ValueError(f"audit payloads never carry personal data (keys: {sorted(bad)})")
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# at, actor, action, subject, payload, request id
Staged = tuple[datetime, str, str, str, str, str | None]


@dataclass(frozen=True)
class ChainReport:
    records: int
    head_seq: int
    head_mac: str


class AuditLog:
    def __init__(self, keys: KeyStore, key_label: str, clock: Clock,
                 telemetry: Telemetry = NO_TELEMETRY) -> None:
        self._keys = keys
        self._label = key_label
        self._clock = clock
        # Set by the composition root (api.metrics.bind) to observe committed records.
        self.telemetry = telemetry

    def _mac(self, prev_mac: str, content: bytes) -> str:
        return self._keys.hmac_sha256(self._label, prev_mac.encode("ascii") + b"\n" + content).hex()

    def record(self, uow: AuditedWork, *, actor: str, action: str, subject: str,
               payload: Mapping[str, JsonValue] | None = None) -> None:
        """Stage one record in the caller's unit of work; it is chained and written when that
        unit of work commits, together with the change it describes."""
        body = canonical_payload(payload or {})
        staged = uow.audit.staged
        if not staged:
            uow.on_commit(lambda: self._append(uow, staged))
        staged.append((self._clock.now(), actor, action, subject, body, current_request_id()))

    def staged(self, *, actor: str, action: str, subject: str, body: str,
               request_id: str | None) -> Staged:
        """One record as :meth:`record` stages it, for a writer that appends outside a unit of
        work (jpki.group_audit): ``body`` is the :func:`canonical_payload`, the time is now."""
        return (self._clock.now(), actor, action, subject, body, request_id)

    def chained(self, seq: int, prev: str, staged: Sequence[Staged]) -> list[AuditRecord]:
        """The records ``staged``, numbered and MACed after the head (``seq``, ``prev``): the
        one place a record's content and MAC are made, whoever writes them."""
        records = []
        for at, actor, action, subject, body, request_id in staged:
            seq += 1
            content = canonical_content(seq, at.isoformat(), actor, action, subject, body,
                                        request_id)
            mac = self._mac(prev, content)
            records.append(AuditRecord(seq=seq, at=at, actor=actor, action=action,
                                       subject=subject, payload=body, prev_mac=prev, mac=mac,
                                       request_id=request_id))
            prev = mac
        return records

    def _append(self, uow: AuditedWork, staged: list[Staged]) -> None:
        if not staged:
            return  # everything staged was rolled back with a savepoint
        # The head is locked only now, at the end of the transaction, so concurrent writers
        # serialise on the commit itself and not on everything the transaction did before.
        seq, prev = uow.audit.head(for_update=True)
        records = self.chained(seq, prev, staged)
        uow.audit.append_many(records)
        uow.audit.set_head(records[-1].seq, records[-1].mac)
        staged.clear()
        if self.telemetry is not NO_TELEMETRY:
            uow.after_commit(lambda: self.observed(records))

    def observed(self, records: list[AuditRecord]) -> None:
        """Pass committed records to the telemetry port."""
        if self.telemetry is NO_TELEMETRY:
            return
        # The change is durable by now: an observer's failure must not turn it into an error.
        with contextlib.suppress(Exception):
            self.telemetry.audited(records)

    def verify(self, uow: UnitOfWork, expect_head: tuple[int, str] | None = None) -> ChainReport:
        """Walk the whole chain; raise :class:`AuditChainBroken` at the first inconsistency."""
        expected_seq = 0
        prev = GENESIS_MAC
        for rec in uow.audit.iterate():
            expected_seq += 1
            if rec.seq != expected_seq:
                raise AuditChainBroken(
                    f"record {expected_seq} is missing or out of order (found {rec.seq})",
                    seq=expected_seq)
            if rec.prev_mac != prev:
                raise AuditChainBroken(f"record {rec.seq} does not follow its predecessor",
                                       seq=rec.seq)
            content = canonical_content(rec.seq, rec.at.isoformat(), rec.actor, rec.action,
                                        rec.subject, rec.payload, rec.request_id)
            if self._mac(prev, content) != rec.mac:
                raise AuditChainBroken(f"record {rec.seq} was altered", seq=rec.seq)
            prev = rec.mac
        head_seq, head_mac = uow.audit.head()
        if (head_seq, head_mac) != (expected_seq, prev):
            raise AuditChainBroken(
                f"the chain ends at record {expected_seq} but the head says {head_seq}",
                seq=expected_seq)
        if expect_head is not None:
            seq, mac = expect_head
            if seq > head_seq:
                raise AuditChainBroken(f"the log was rolled back below record {seq}", seq=seq)
            if seq > 0 and self._mac_at(uow, seq) != mac:
                raise AuditChainBroken(f"record {seq} differs from the recorded checkpoint",
                                       seq=seq)
        return ChainReport(records=expected_seq, head_seq=head_seq, head_mac=head_mac)

    @staticmethod
    def _mac_at(uow: UnitOfWork, seq: int) -> str | None:
        for rec in uow.audit.iterate():
            if rec.seq == seq:
                return rec.mac
        return None
