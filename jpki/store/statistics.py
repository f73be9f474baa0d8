"""The dashboard's aggregates (jpki.registry.statistics.StatisticsSource) as Core statements.

A JST day or month is computed by the database, per dialect: timestamps are stored as naive UTC
(jpki.store.types.UtcDateTime), so the day is that of the instant plus nine hours.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, literal_column, or_, select, text
from sqlalchemy.sql.elements import ColumnElement

from jpki.model import CertKind, CertStatus, RevocationReason
from jpki.registry.statistics import CrlShard
from jpki.store.tables import ca_generations, certificates, crl_publications

_C = certificates.c


class SqlStatistics:
    def __init__(self, connection: Connection) -> None:
        self._c = connection
        self._pg = connection.dialect.name == "postgresql"

    def _day(self, column: Any) -> ColumnElement[Any]:
        if self._pg:
            return func.date(column + text("interval '9 hours'"))
        return func.date(column, "+9 hours")

    def _month(self, column: Any) -> ColumnElement[Any]:
        if self._pg:
            return func.to_char(column + text("interval '9 hours'"), literal_column("'YYYY-MM'"))
        return func.strftime("%Y-%m", column, "+9 hours")

    @staticmethod
    def _as_date(value: Any) -> date:
        return value if isinstance(value, date) else date.fromisoformat(str(value))

    def issued_per_day(self, start: datetime, end: datetime,
                       renewals: bool) -> Sequence[tuple[date, CertKind, int]]:
        day = self._day(_C.created_at).label("day")
        renewal = _C.predecessor_id.is_not(None) if renewals else _C.predecessor_id.is_(None)
        stmt = (select(day, _C.kind, func.count())
                .where(_C.status == CertStatus.ISSUED, _C.created_at >= start,
                       _C.created_at <= end, renewal)
                .group_by(day, _C.kind))
        return [(self._as_date(d), CertKind(k), int(n)) for d, k, n in self._c.execute(stmt)]

    def revoked_per_day(self, start: datetime,
                        end: datetime) -> Sequence[tuple[date, CertKind, int]]:
        day = self._day(_C.revoked_at).label("day")
        stmt = (select(day, _C.kind, func.count())
                .where(_C.revoked_at >= start, _C.revoked_at <= end,
                       _C.status == CertStatus.ISSUED)
                .group_by(day, _C.kind))
        return [(self._as_date(d), CertKind(k), int(n)) for d, k, n in self._c.execute(stmt)]

    def revocation_reasons(self, start: datetime,
                           end: datetime) -> Sequence[tuple[RevocationReason, int]]:
        stmt = (select(_C.revocation_reason, func.count())
                .where(_C.revoked_at >= start, _C.revoked_at <= end,
                       _C.status == CertStatus.ISSUED)
                .group_by(_C.revocation_reason))
        return [(RevocationReason(r), int(n)) for r, n in self._c.execute(stmt)]

    def _valid(self, now: datetime) -> ColumnElement[bool]:
        return and_(_C.status == CertStatus.ISSUED, _C.not_before <= now, _C.not_after > now,
                    or_(_C.revoked_at.is_(None), _C.revoked_at > now))

    def expiring_per_month(self, now: datetime,
                           until: datetime) -> Sequence[tuple[str, CertKind, int]]:
        month = self._month(_C.not_after).label("month")
        stmt = (select(month, _C.kind, func.count())
                .where(self._valid(now), _C.not_after <= until)
                .group_by(month, _C.kind))
        return [(str(m), CertKind(k), int(n)) for m, k, n in self._c.execute(stmt)]

    def valid_per_prefecture(self, now: datetime) -> Sequence[tuple[str, CertKind, int]]:
        # A certificate's shard is its holder's municipality code when it was issued: its first
        # two digits are the prefecture (JIS X 0401).
        prefecture = func.substr(_C.shard, 1, 2).label("prefecture")
        stmt = (select(prefecture, _C.kind, func.count())
                .where(self._valid(now))
                .group_by(prefecture, _C.kind))
        return [(str(p), CertKind(k), int(n)) for p, k, n in self._c.execute(stmt)]


    def newest_full_crls(self) -> Sequence[CrlShard]:
        p, g = crl_publications.c, ca_generations.c
        newest = (select(p.ca_generation_id, p.scope, func.max(p.number).label("number"))
                  .where(p.kind == "full").group_by(p.ca_generation_id, p.scope).subquery())
        stmt = (select(g.ca, g.generation, p.scope, p.number, p.this_update, p.next_update,
                       p.entries)
                .join(newest, and_(p.ca_generation_id == newest.c.ca_generation_id,
                                   p.scope == newest.c.scope, p.number == newest.c.number))
                .join(ca_generations, g.id == p.ca_generation_id)
                .where(p.kind == "full"))
        return [CrlShard(ca=str(getattr(ca, "value", ca)), generation=int(generation),
                         scope=scope, number=int(number), this_update=this_update,
                         next_update=next_update, entries=int(entries))
                for ca, generation, scope, number, this_update, next_update, entries
                in self._c.execute(stmt)]


class SqlStatisticsFactory:
    """One read-only connection per report, so its aggregates see one snapshot."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def __call__(self) -> Iterator[SqlStatistics]:
        with self._engine.connect() as connection, connection.begin():
            yield SqlStatistics(connection)
