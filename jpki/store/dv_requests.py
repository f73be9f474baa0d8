"""DV support requests (jpki.ports.DvRequestRepository) as Core statements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from jpki.model import DvRequest
from jpki.store.tables import dv_requests

_D = dv_requests.c


def _request(row: object) -> DvRequest:
    m = row._mapping  # type: ignore[attr-defined]
    return DvRequest(id=m["id"], resident_id=m["resident_id"], turn_on=m["turn_on"],
                     category=m["category"], status=m["status"],
                     requested_by=m["requested_by"], requested_at=m["requested_at"],
                     decided_by=m["decided_by"], decided_at=m["decided_at"])


class SqlDvRequests:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, request: DvRequest) -> None:
        self._s.execute(insert(dv_requests).values(
            id=request.id, resident_id=request.resident_id, turn_on=request.turn_on,
            category=request.category, status=request.status,
            requested_by=request.requested_by, requested_at=request.requested_at))

    def get(self, request_id: str, *, for_update: bool = False) -> DvRequest | None:
        stmt = select(dv_requests).where(_D.id == request_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self._s.execute(stmt).first()
        return _request(row) if row is not None else None

    def pending(self, resident_id: str | None = None) -> Sequence[DvRequest]:
        stmt = select(dv_requests).where(_D.status == "pending")
        if resident_id is not None:
            stmt = stmt.where(_D.resident_id == resident_id)
        return [_request(r) for r in self._s.execute(stmt.order_by(_D.requested_at, _D.id))]

    def decide(self, request_id: str, status: str, by: str, at: datetime) -> None:
        self._s.execute(update(dv_requests).where(_D.id == request_id, _D.status == "pending")
                        .values(status=status, decided_by=by, decided_at=at))
