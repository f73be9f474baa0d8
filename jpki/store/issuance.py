"""The issuance path's statements (jpki.ports.IssuanceRecords): Core, built once.

Every certificate passes through these, so they are prebuilt Core statements executed on the
session's connection — the unit of work's transaction — and map rows to small frozen values:
no ORM flush, no identity map, no mapped entity constructed per row (bench/issuance.py measured
the ORM path at about 1 ms of CPython per certificate). Pending ORM changes of the same unit of
work are flushed before the intents are inserted, so the rows they refer to (a card created in
this transaction, a device) exist first.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, insert, select, update
from sqlalchemy.orm import Session

from jpki.errors import InternalError
from jpki.model import (
    CardFacts,
    CardStatus,
    CertificateFacts,
    CertKind,
    CertStatus,
    NewCard,
    PendingCertificate,
    ProofingFacts,
    ResidentFacts,
)
from jpki.store.tables import cards, certificates, proofings, residents

_T = certificates.c
_R = residents.c
_C = cards.c
_P = proofings.c

# The lengths an IN list of ids is padded to (by repeating its last value, which changes no
# result): a handful of statements, each compiled once, serve every batch size.
_IN_SIZES = (1, 4, 8, 16, 32)


def _in_parts(values: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """``values`` (deduplicated, sorted) in parts of a fixed length: (length, parameters)."""
    ordered = sorted(set(values))
    top = _IN_SIZES[-1]
    for at in range(0, len(ordered), top):
        part = ordered[at:at + top]
        size = next(n for n in _IN_SIZES if n >= len(part))
        part += [part[-1]] * (size - len(part))
        yield size, {f"v{i}": v for i, v in enumerate(part)}


def _in(column: Any, size: int) -> Any:
    return column.in_([bindparam(f"v{i}") for i in range(size)])


# Locked as the single path's ORM reads lock them (FOR UPDATE on PostgreSQL; SQLite's
# BEGIN IMMEDIATE already holds the database), in id order so that two batches lock alike.
@functools.lru_cache(maxsize=8)
def _residents(size: int) -> Select[Any]:
    return (select(_R.id, _R.municipality_code, _R.registry_source, _R.status, _R.name,
                   _R.birth_date, _R.sex, _R.address, _R.emigrated_on)
            .where(_in(_R.id, size)).order_by(_R.id).with_for_update())


@functools.lru_cache(maxsize=8)
def _proofings(size: int) -> Select[Any]:
    return (select(_P.id, _P.resident_id, _P.station, _P.expires_at, _P.used_at)
            .where(_in(_P.id, size)).order_by(_P.id).with_for_update())


@functools.lru_cache(maxsize=8)
def _active_cards(size: int) -> Select[Any]:
    return (select(_C.id, _C.resident_id, _C.number, _C.expires_on, _C.status)
            .where(_in(_C.resident_id, size), _C.status == CardStatus.ACTIVE).order_by(_C.id))


@functools.lru_cache(maxsize=8)
def _card_numbers(size: int) -> Select[tuple[str]]:
    return select(_C.number).where(_in(_C.number, size))


@functools.lru_cache(maxsize=16)
def _histories(size: int, kinds: tuple[CertKind, ...]) -> Select[Any]:
    return (select(_T.resident_id, _T.id, _T.serial, _T.kind, _T.card_id, _T.status,
                   _T.not_before, _T.not_after, _T.revoked_at, _T.created_at)
            .where(_in(_T.resident_id, size),
                   _T.kind.in_([bindparam(f"kind{i}", kind) for i, kind in enumerate(kinds)]))
            .order_by(_T.id))


_ADD_CARDS = insert(cards).returning(_C.id, sort_by_parameter_order=True)

# Only an unused record: one used meanwhile is not used twice.
_USE_PROOFING = (update(proofings)
                 .where(_P.id == bindparam("b_id"), _P.used_at.is_(None))
                 .values(used_at=bindparam("b_at"), used_for=bindparam("b_for")))

# IN lists of a fixed length, one statement per length: an "expanding" parameter would be
# rendered anew at every execution.
@functools.lru_cache(maxsize=8)
def _keys_in_use(count: int) -> Select[tuple[str]]:
    return select(_T.public_key_sha256).where(
        _T.public_key_sha256.in_([bindparam(f"k{i}") for i in range(count)]),
        _T.status != CertStatus.ABANDONED)


@functools.lru_cache(maxsize=8)
def _history(kinds: tuple[CertKind, ...]) -> Select[Any]:
    return (select(_T.id, _T.serial, _T.kind, _T.card_id, _T.status, _T.not_before,
                   _T.not_after, _T.revoked_at, _T.created_at)
            .where(_T.resident_id == bindparam("resident"),
                   _T.kind.in_([bindparam(f"kind{i}", kind) for i, kind in enumerate(kinds)]))
            .order_by(_T.id))


# One multi-row INSERT … RETURNING (SQLAlchemy's "insertmanyvalues"), ids in parameter order.
_RECORD = insert(certificates).returning(_T.id, sort_by_parameter_order=True)

# The pending state is required, so an intent abandoned in between cannot be revived.
_MARK_ISSUED = (update(certificates)
                .where(_T.id == bindparam("b_id"), _T.status == CertStatus.PENDING)
                .values(status=CertStatus.ISSUED, der=bindparam("b_der"), tbs_der=None,
                        sibling_id=bindparam("b_sibling"), updated_at=bindparam("b_at")))

_SET_SIBLING = (update(certificates).where(_T.id == bindparam("b_id"))
                .values(sibling_id=bindparam("b_sibling")))


class SqlIssuanceRecords:
    def __init__(self, session: Session) -> None:
        self._s = session

    def keys_in_use(self, public_key_sha256s: Sequence[str]) -> set[str]:
        keys = sorted(set(public_key_sha256s))
        found: set[str] = set()
        for at in range(0, len(keys), 8):
            part = keys[at:at + 8]
            rows = self._s.connection().execute(_keys_in_use(len(part)),
                                                {f"k{i}": k for i, k in enumerate(part)})
            found.update(str(r[0]) for r in rows)
        return found

    def history(self, resident_id: str,
                kinds: Sequence[CertKind]) -> Sequence[CertificateFacts]:
        rows = self._s.connection().execute(_history(tuple(kinds)), {"resident": resident_id})
        return [CertificateFacts(id=r[0], serial=r[1], kind=r[2], card_id=r[3], status=r[4],
                                 not_before=r[5], not_after=r[6], revoked_at=r[7],
                                 created_at=r[8]) for r in rows]

    def residents(self, resident_ids: Sequence[str]) -> Mapping[str, ResidentFacts]:
        found: dict[str, ResidentFacts] = {}
        connection = self._s.connection()
        for size, params in _in_parts(resident_ids):
            for r in connection.execute(_residents(size), params):
                found[r[0]] = ResidentFacts(
                    id=r[0], municipality_code=r[1], registry_source=r[2], status=r[3],
                    name=r[4], birth_date=r[5], sex=r[6], address=r[7], emigrated_on=r[8])
        return found

    def proofings(self, proofing_ids: Sequence[str]) -> Mapping[str, ProofingFacts]:
        found: dict[str, ProofingFacts] = {}
        connection = self._s.connection()
        for size, params in _in_parts(proofing_ids):
            for r in connection.execute(_proofings(size), params):
                found[r[0]] = ProofingFacts(id=r[0], resident_id=r[1], station=r[2],
                                            expires_at=r[3], used_at=r[4])
        return found

    def active_cards(self, resident_ids: Sequence[str]) -> Mapping[str, CardFacts]:
        found: dict[str, CardFacts] = {}
        connection = self._s.connection()
        for size, params in _in_parts(resident_ids):
            for r in connection.execute(_active_cards(size), params):
                # The first, as the ORM read's .first() (a resident has one active card).
                found.setdefault(r[1], CardFacts(id=r[0], resident_id=r[1], number=r[2],
                                                 expires_on=r[3], status=r[4]))
        return found

    def card_numbers_taken(self, numbers: Sequence[str]) -> set[str]:
        taken: set[str] = set()
        connection = self._s.connection()
        for size, params in _in_parts(numbers):
            taken.update(str(r[0]) for r in connection.execute(_card_numbers(size), params))
        return taken

    def histories(self, resident_ids: Sequence[str],
                  kinds: Sequence[CertKind]) -> Mapping[str, Sequence[CertificateFacts]]:
        found: dict[str, list[CertificateFacts]] = {}
        connection = self._s.connection()
        for size, params in _in_parts(resident_ids):
            rows = connection.execute(_histories(size, tuple(kinds)), params)
            for r in rows:
                found.setdefault(r[0], []).append(CertificateFacts(
                    id=r[1], serial=r[2], kind=r[3], card_id=r[4], status=r[5],
                    not_before=r[6], not_after=r[7], revoked_at=r[8], created_at=r[9]))
        return found

    def add_cards(self, new: Sequence[NewCard]) -> list[int]:
        if not new:
            return []
        result = self._s.connection().execute(_ADD_CARDS, [
            {"resident_id": c.resident_id, "number": c.number, "expires_on": c.expires_on,
             "status": CardStatus.ACTIVE, "created_at": c.created_at,
             "status_changed_at": c.created_at} for c in new])
        return [int(r[0]) for r in result]

    def use_proofings(self, uses: Sequence[tuple[str, str, datetime]]) -> None:
        if not uses:
            return
        result = self._s.connection().execute(_USE_PROOFING, [
            {"b_id": proofing_id, "b_for": purpose, "b_at": at}
            for proofing_id, purpose, at in uses])
        if result.rowcount not in (-1, len(uses)):
            raise InternalError("an identity-proofing record was used meanwhile")

    def record_intents(self, rows: Sequence[PendingCertificate]) -> list[int]:
        if not rows:
            return []
        # The rows reference what this unit of work added through the ORM (a new card, a
        # device): those INSERTs go first.
        self._s.flush()
        result = self._s.connection().execute(_RECORD, [
            {"serial": r.serial, "kind": r.kind, "resident_id": r.resident_id,
             "card_id": r.card_id, "ca_generation_id": r.ca_generation_id,
             "status": CertStatus.PENDING, "not_before": r.not_before,
             "not_after": r.not_after, "shard": r.shard, "registry_source": r.registry_source,
             "public_key_sha256": r.public_key_sha256, "tbs_der": r.tbs_der, "der": None,
             "predecessor_id": r.predecessor_id, "sibling_id": None, "revoked_at": None,
             "revocation_reason": None, "revocation_recorded_at": None, "crl_entry": None,
             "hold_released_at": None, "issued_by": r.issued_by,
             "linked_id": r.linked_id, "device_id": r.device_id,
             "delivery_required": r.delivery_required, "delivered_at": None,
             "created_at": r.created_at, "updated_at": r.created_at}
            for r in rows])
        return [int(r[0]) for r in result]

    def mark_issued(self, updates: Sequence[tuple[int, bytes, int | None]],
                    at: datetime) -> None:
        if not updates:
            return
        result = self._s.connection().execute(_MARK_ISSUED, [
            {"b_id": cid, "b_der": der, "b_sibling": sibling, "b_at": at}
            for cid, der, sibling in updates])
        if result.rowcount not in (-1, len(updates)):
            raise InternalError("an issuance intent was abandoned before it could be stored")

    def set_sibling(self, cert_id: int, sibling_id: int) -> None:
        self._s.connection().execute(_SET_SIBLING, {"b_id": cert_id, "b_sibling": sibling_id})
