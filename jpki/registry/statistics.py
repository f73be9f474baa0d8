"""What the national operator watches (the supervisor's dashboard, GET /v1/operators/statistics):
certificates issued, renewed and revoked per day, the reasons of revocations, the wave of
expiries per month ahead (to plan counter staff), and the valid certificates per prefecture.

Days and months are Japan's (JST, UTC+9): a certificate issued at 23:30 UTC counts on the next
day, as the counter that issued it saw it. Every figure comes from one read-only aggregate per
table over the window asked for (jpki.store.statistics), never from rows brought into Python,
so the report costs the same for a thousand holders as for a hundred million.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal, Protocol

from jpki.access.authz import Grant, Operation
from jpki.errors import InvalidInput
from jpki.model import CertKind, RevocationReason
from jpki.ports import Clock
from jpki.validity import jst_date

MAX_DAYS = 366
EXPIRY_MONTHS = 24


@dataclass(frozen=True)
class DayCount:
    day: date
    kind: CertKind
    count: int


@dataclass(frozen=True)
class ReasonCount:
    reason: RevocationReason
    count: int


@dataclass(frozen=True)
class MonthCount:
    month: str  # YYYY-MM (JST)
    kind: CertKind
    count: int


@dataclass(frozen=True)
class PrefectureCount:
    prefecture: str  # JIS X 0401 code, 01-47
    kind: CertKind
    count: int


@dataclass(frozen=True)
class CrlShard:
    """The newest full CRL of one scope (a CA generation's municipality shard, or its ARL)."""

    ca: str  # sign | auth
    generation: int
    scope: str  # a municipality code, or "arl"
    number: int
    this_update: datetime
    next_update: datetime
    entries: int

    def overdue(self, now: datetime) -> bool:
        """Past its nextUpdate: relying parties holding it now treat it as stale (RFC 5280
        §5.1.2.5)."""
        return self.next_update < now


@dataclass(frozen=True)
class Report:
    since: date  # first day counted (JST)
    until: date  # last day counted (JST), today
    issued: tuple[DayCount, ...]  # first issuances (not renewals)
    renewed: tuple[DayCount, ...]
    revoked: tuple[DayCount, ...]  # by the day the revocation takes effect
    reasons: tuple[ReasonCount, ...]  # of the revocations in the window
    expiring: tuple[MonthCount, ...]  # valid today, by the month they expire
    valid_by_prefecture: tuple[PrefectureCount, ...]
    crls: tuple[CrlShard, ...]  # every scope's newest full CRL
    at: datetime  # when the report was read


class StatisticsSource(Protocol):
    """The aggregates, read in one snapshot (jpki.store.statistics)."""

    def issued_per_day(self, start: datetime, end: datetime,
                       renewals: bool) -> Sequence[tuple[date, CertKind, int]]: ...
    def revoked_per_day(self, start: datetime,
                        end: datetime) -> Sequence[tuple[date, CertKind, int]]: ...
    def revocation_reasons(self, start: datetime,
                           end: datetime) -> Sequence[tuple[RevocationReason, int]]: ...
    def expiring_per_month(self, now: datetime,
                           until: datetime) -> Sequence[tuple[str, CertKind, int]]: ...
    def valid_per_prefecture(self, now: datetime) -> Sequence[tuple[str, CertKind, int]]: ...
    def newest_full_crls(self) -> Sequence[CrlShard]: ...


class StatisticsSourceFactory(Protocol):
    def __call__(self) -> AbstractContextManager[StatisticsSource]: ...


class Statistics:
    def __init__(self, source: StatisticsSourceFactory, clock: Clock) -> None:
        self._source = source
        self._clock = clock

    def report(self, grant: Grant[Literal[Operation.STATISTICS_READ]],
               days: int = 30) -> Report:
        grant.require(Operation.STATISTICS_READ)
        if not 1 <= days <= MAX_DAYS:
            raise InvalidInput(f"days is 1 to {MAX_DAYS}", field="days")
        now = self._clock.now()
        until = jst_date(now)
        since = until - timedelta(days=days - 1)
        # The window's bounds as instants: 00:00 JST of the first day, now.
        start = datetime(since.year, since.month, since.day) - timedelta(hours=9)
        start = start.replace(tzinfo=now.tzinfo)
        horizon = now + timedelta(days=31 * EXPIRY_MONTHS)
        with self._source() as source:
            return Report(
                since=since, until=until,
                issued=_days(source.issued_per_day(start, now, renewals=False)),
                renewed=_days(source.issued_per_day(start, now, renewals=True)),
                revoked=_days(source.revoked_per_day(start, now)),
                reasons=tuple(ReasonCount(r, n)
                              for r, n in sorted(source.revocation_reasons(start, now))),
                expiring=tuple(MonthCount(m, k, n) for m, k, n in sorted(
                    source.expiring_per_month(now, horizon)) if _within(m, until)),
                valid_by_prefecture=tuple(PrefectureCount(p, k, n) for p, k, n in sorted(
                    source.valid_per_prefecture(now))),
                crls=tuple(sorted(source.newest_full_crls(),
                                  key=lambda c: (c.ca, c.generation, c.scope))),
                at=now)


def _days(rows: Sequence[tuple[date, CertKind, int]]) -> tuple[DayCount, ...]:
    return tuple(DayCount(d, k, n) for d, k, n in sorted(rows))


def _within(month: str, today: date) -> bool:
    """The next EXPIRY_MONTHS months, this one included."""
    year, number = int(month[:4]), int(month[5:7])
    ahead = (year - today.year) * 12 + number - today.month
    return 0 <= ahead < EXPIRY_MONTHS
