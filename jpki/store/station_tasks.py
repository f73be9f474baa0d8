"""Station tasks (jpki.ports.StationTaskRepository) as Core statements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from jpki.model import StationTask
from jpki.store.tables import station_tasks

_T = station_tasks.c


def _task(row: object) -> StationTask:
    m = row._mapping  # type: ignore[attr-defined]
    return StationTask(**{c.name: m[c.name] for c in station_tasks.columns})


class SqlStationTasks:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, task: StationTask) -> None:
        self._s.execute(insert(station_tasks).values(
            **{c.name: getattr(task, c.name) for c in station_tasks.columns}))

    def get(self, task_id: str, *, for_update: bool = False) -> StationTask | None:
        stmt = select(station_tasks).where(_T.id == task_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self._s.execute(stmt).first()
        return _task(row) if row is not None else None

    def next_queued(self, station: str) -> StationTask | None:
        # SKIP LOCKED (PostgreSQL): two processes serving one station's claims never hand out
        # the same task; SQLite has one writer and ignores it.
        row = self._s.execute(
            select(station_tasks).where(_T.station == station, _T.status == "queued")
            .order_by(_T.created_at, _T.id).limit(1).with_for_update(skip_locked=True)).first()
        return _task(row) if row is not None else None

    def of_resident(self, resident_id: str, limit: int = 20) -> Sequence[StationTask]:
        return [_task(r) for r in self._s.execute(
            select(station_tasks).where(_T.resident_id == resident_id)
            .order_by(_T.created_at.desc(), _T.id).limit(limit))]

    def open_for(self, resident_id: str) -> Sequence[StationTask]:
        return [_task(r) for r in self._s.execute(
            select(station_tasks).where(_T.resident_id == resident_id,
                                        _T.status.in_(("queued", "claimed"))))]

    def update(self, task_id: str, at: datetime, **values: str | None) -> None:
        self._s.execute(update(station_tasks).where(_T.id == task_id)
                        .values(updated_at=at, **values))
