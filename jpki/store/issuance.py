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
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, insert, select, update
from sqlalchemy.orm import Session

from jpki.errors import InternalError
from jpki.model import CertificateFacts, CertKind, CertStatus, PendingCertificate
from jpki.store.tables import certificates

_T = certificates.c

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
