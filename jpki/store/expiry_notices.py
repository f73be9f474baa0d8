"""The expiry notices' read (jpki.registry.expiry_notices.NoticeSource) as Core statements, on
one snapshot: REPEATABLE READ on PostgreSQL, one read transaction on SQLite (WAL, the read-only
engine), so that the count audited is the number of rows streamed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Engine, Select, and_, distinct, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from jpki.model import CertKind, CertStatus, ResidentStatus
from jpki.registry.expiry_notices import NoticeRow
from jpki.store.tables import certificates, residents

_C, _R = certificates.c, residents.c
_JOIN = certificates.join(residents, _C.resident_id == _R.id)
STREAM_BATCH = 1000


def _where(municipality: str, start: datetime, end: datetime,
           at: datetime) -> ColumnElement[bool]:
    # What is valid at ``at`` (Certificate.is_valid) and ends within [start, end).
    return and_(_R.municipality_code == municipality, _R.status == ResidentStatus.ACTIVE,
                _C.kind.in_([CertKind.CARD_SIGN, CertKind.CARD_AUTH]),
                _C.status == CertStatus.ISSUED, _C.not_before <= at, _C.not_after >= at,
                or_(_C.revoked_at.is_(None), _C.revoked_at > at),
                _C.not_after >= start, _C.not_after < end)


class SqlNoticeSnapshot:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def count(self, municipality: str, start: datetime, end: datetime, at: datetime) -> int:
        stmt = select(func.count(distinct(_R.id))).select_from(_JOIN).where(
            _where(municipality, start, end, at))
        return int(self._c.execute(stmt).scalar_one())

    def rows(self, municipality: str, start: datetime, end: datetime,
             at: datetime) -> Iterator[NoticeRow]:
        stmt: Select[tuple[str, CertKind, datetime, bool, str, str]] = (
            select(_R.id, _C.kind, _C.not_after, _R.dv_support, _R.name, _R.address)
            .select_from(_JOIN).where(_where(municipality, start, end, at))
            .order_by(_R.id, _C.kind))
        if self._c.dialect.name == "postgresql":
            # A cursor is planned for its first tenth of rows (cursor_tuple_fraction): for the
            # largest municipality at 10^7 certificates that meant walking the holders' index
            # over the whole table, 26 s, where the plan for every row (each holder's
            # certificates by index, then a sort) takes 0.5 s. The export reads every row.
            self._c.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        # A server-side cursor on PostgreSQL; SQLite steps through the result as it is read.
        result = self._c.execution_options(stream_results=True,
                                           yield_per=STREAM_BATCH).execute(stmt)
        for row in result:
            yield NoticeRow(resident_id=row.id, kind=CertKind(row.kind),
                            not_after=row.not_after, dv_support=bool(row.dv_support),
                            name=row.name, address=row.address)


class SqlNoticeSource:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        if engine.dialect.name == "postgresql":
            self._engine = engine.execution_options(isolation_level="REPEATABLE READ")

    @contextmanager
    def snapshot(self) -> Iterator[SqlNoticeSnapshot]:
        with self._engine.connect() as conn, conn.begin():
            yield SqlNoticeSnapshot(conn)
