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

from jpki.model import CertKind, CertStatus, JobRun, RevocationReason
from jpki.registry.statistics import CrlShard, RpUsage
from jpki.store.jobs import job_run_of
from jpki.store.tables import (
    audit_head,
    ca_generations,
    certificates,
    crl_publications,
    job_runs,
    ocsp_traffic,
    relying_parties,
    rp_usage,
    rp_usage_rollup,
)
from jpki.telemetry import OCSP_BUCKETS

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

    def ocsp_per_day(self, start: datetime, end: datetime
                     ) -> Sequence[tuple[date, str, int, float, Sequence[int]]]:
        t = ocsp_traffic.c
        day = self._day(t.minute).label("day")
        buckets = [func.sum(t[f"bucket_{i}"]) for i in range(len(OCSP_BUCKETS) + 1)]
        stmt = (select(day, t.outcome, func.sum(t.requests), func.sum(t.seconds), *buckets)
                .where(t.minute >= _minute(start), t.minute <= end)
                .group_by(day, t.outcome))
        return [(self._as_date(d), str(outcome), int(n), float(seconds),
                 [int(b) for b in counts])
                for d, outcome, n, seconds, *counts in self._c.execute(stmt)]

    def ocsp_peak_minute(self, start: datetime, end: datetime) -> Sequence[tuple[date, int]]:
        t = ocsp_traffic.c
        per_minute = (select(t.minute, func.sum(t.requests).label("n"))
                      .where(t.minute >= _minute(start), t.minute <= end)
                      .group_by(t.minute).subquery())
        day = self._day(per_minute.c.minute).label("day")
        stmt = select(day, func.max(per_minute.c.n)).group_by(day)
        return [(self._as_date(d), int(n)) for d, n in self._c.execute(stmt)]

    def rp_usage(self, since: date, until: date) -> Sequence[RpUsage]:
        u, r = rp_usage.c, relying_parties.c
        stmt = (select(u.relying_party, r.name, u.scope, func.sum(u.calls),
                       func.sum(u.refused), func.sum(u["items"]))
                .select_from(rp_usage.outerjoin(relying_parties, r.id == u.relying_party))
                .where(u.day >= since, u.day <= until)
                .group_by(u.relying_party, r.name, u.scope))
        return [RpUsage(relying_party=party, name=name, scope=scope, calls=int(calls),
                        refused=int(refused), items=int(items))
                for party, name, scope, calls, refused, items in self._c.execute(stmt)]

    def rp_usage_position(self) -> tuple[int, datetime | None]:
        row = self._c.execute(select(rp_usage_rollup.c.seq, rp_usage_rollup.c.at)
                              .where(rp_usage_rollup.c.id == 1)).first()
        return (0, None) if row is None else (int(row.seq), row.at)

    def audit_head(self) -> int:
        return int(self._c.execute(select(audit_head.c.seq).where(audit_head.c.id == 1))
                   .scalar() or 0)

    def job_run(self, job: str) -> JobRun | None:
        row = self._c.execute(select(job_runs).where(job_runs.c.job == job)).first()
        return None if row is None else job_run_of(row)


def _minute(instant: datetime) -> datetime:
    """The minute ``instant`` falls in: a window starting at 00:00 JST starts on a minute."""
    return instant.replace(second=0, microsecond=0)


class SqlStatisticsFactory:
    """One read-only connection per report, so its aggregates see one snapshot."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def __call__(self) -> Iterator[SqlStatistics]:
        with self._engine.connect() as connection, connection.begin():
            yield SqlStatistics(connection)
