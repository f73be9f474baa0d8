"""What the national operator watches (the supervisor's dashboard, GET /v1/operators/statistics):
certificates issued, renewed and revoked per day, the reasons of revocations, the wave of
expiries per month ahead (to plan counter staff), the valid certificates per prefecture, the
OCSP endpoint's request rate and latency per day, the relying parties' calls per party and
scope, and the audit chain's last verification.

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
from jpki.jobs import AUDIT_VERIFY
from jpki.model import CertKind, JobRun, RevocationReason
from jpki.ports import Clock
from jpki.telemetry import OCSP_BUCKETS
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
class OcspDay:
    """One JST day of the OCSP endpoint's traffic, every process and node summed
    (jpki.store.ocsp_traffic)."""

    day: date
    requests: int
    successful: int  # OCSPResponseStatus successful (RFC 6960 §4.2.1)
    per_second: float  # mean over the day (today: over the part gone)
    peak_per_second: float  # the busiest minute's
    mean_ms: float | None
    p50_ms: float | None  # estimated from the buckets, as Prometheus's histogram_quantile
    p99_ms: float | None


@dataclass(frozen=True)
class RpUsage:
    """A relying party's calls of one scope over the window (jpki.store.rp_usage)."""

    relying_party: str
    name: str | None  # None if the party's row is gone
    scope: str  # status | linkage | basic4
    calls: int  # answered
    refused: int
    items: int  # serials asked (status); answers given (linkage, basic4)


@dataclass(frozen=True)
class RpUsageCoverage:
    """How far the relying-party figures go: records up to ``through`` of the ``head`` the
    chain had when the report was read, summed at ``at`` (None: never yet)."""

    through: int
    head: int
    at: datetime | None


@dataclass(frozen=True)
class AuditVerification:
    """The latest `jpki audit verify` (jpki.jobs.AUDIT_VERIFY in the jobs' ledger); every field
    but ``head`` is None if it never ran."""

    at: datetime | None
    outcome: str | None  # ok | failed
    records: int | None  # records verified (up to the first broken one, if it failed)
    error: str | None  # the failure's type: AuditChainBroken, AuditStateMismatch …
    broken_at: int | None  # the first record that did not verify
    runs: int
    failures: int
    last_success_at: datetime | None
    head: int  # records in the chain when the report was read

    @staticmethod
    def of(run: JobRun | None, head: int) -> AuditVerification:
        if run is None:
            return AuditVerification(None, None, None, None, None, 0, 0, None, head)
        return AuditVerification(
            at=run.started_at, outcome=run.outcome, records=run.counts.get("records"),
            error=run.error, broken_at=run.counts.get("broken_at"), runs=run.runs,
            failures=run.failures, last_success_at=run.last_success_at, head=head)


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
    ocsp: tuple[OcspDay, ...]  # every day of the window
    rp_usage: tuple[RpUsage, ...]
    rp_coverage: RpUsageCoverage
    audit_verification: AuditVerification


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
    def ocsp_per_day(self, start: datetime, end: datetime
                     ) -> Sequence[tuple[date, str, int, float, Sequence[int]]]:
        """(day, outcome, requests, sum of seconds, count per bucket of OCSP_BUCKETS and one
        above them)"""
        ...
    def ocsp_peak_minute(self, start: datetime, end: datetime) -> Sequence[tuple[date, int]]:
        """(day, the requests of its busiest minute)"""
        ...
    def rp_usage(self, since: date, until: date) -> Sequence[RpUsage]: ...
    def rp_usage_position(self) -> tuple[int, datetime | None]: ...
    def audit_head(self) -> int: ...
    def job_run(self, job: str) -> JobRun | None: ...


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
            head = source.audit_head()
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
                at=now,
                ocsp=_ocsp_days(since, until, start, now, source.ocsp_per_day(start, now),
                                source.ocsp_peak_minute(start, now)),
                rp_usage=tuple(sorted(source.rp_usage(since, until),
                                      key=lambda u: (u.relying_party, u.scope))),
                rp_coverage=RpUsageCoverage(*_position(source.rp_usage_position(), head)),
                audit_verification=AuditVerification.of(source.job_run(AUDIT_VERIFY), head))


def _days(rows: Sequence[tuple[date, CertKind, int]]) -> tuple[DayCount, ...]:
    return tuple(DayCount(d, k, n) for d, k, n in sorted(rows))


def _within(month: str, today: date) -> bool:
    """The next EXPIRY_MONTHS months, this one included."""
    year, number = int(month[:4]), int(month[5:7])
    ahead = (year - today.year) * 12 + number - today.month
    return 0 <= ahead < EXPIRY_MONTHS


def _position(position: tuple[int, datetime | None], head: int
              ) -> tuple[int, int, datetime | None]:
    through, at = position
    return through, head, at


def _ocsp_days(since: date, until: date, start: datetime, now: datetime,
               rows: Sequence[tuple[date, str, int, float, Sequence[int]]],
               peaks: Sequence[tuple[date, int]]) -> tuple[OcspDay, ...]:
    """Every day of the window, a day without traffic as zeros."""
    requests: dict[date, int] = {}
    successful: dict[date, int] = {}
    seconds: dict[date, float] = {}
    buckets: dict[date, list[int]] = {}
    for day, outcome, n, total, counts in rows:
        requests[day] = requests.get(day, 0) + n
        if outcome == "successful":
            successful[day] = successful.get(day, 0) + n
        seconds[day] = seconds.get(day, 0.0) + total
        summed = buckets.setdefault(day, [0] * (len(OCSP_BUCKETS) + 1))
        for i, count in enumerate(counts):
            summed[i] += count
    peak = dict(peaks)
    days = []
    for offset in range((until - since).days + 1):
        day = since + timedelta(days=offset)
        n = requests.get(day, 0)
        # Today's mean is over the part of the day gone by, not the whole day.
        elapsed = 86400.0 if day < until else max(
            1.0, (now - (start + timedelta(days=offset))).total_seconds())
        counts = buckets.get(day, [])
        days.append(OcspDay(
            day=day, requests=n, successful=successful.get(day, 0),
            per_second=n / elapsed, peak_per_second=peak.get(day, 0) / 60.0,
            mean_ms=seconds[day] / n * 1000 if n else None,
            p50_ms=_quantile(0.5, counts), p99_ms=_quantile(0.99, counts)))
    return tuple(days)


def _quantile(q: float, counts: Sequence[int]) -> float | None:
    """The ``q`` quantile in milliseconds from non-cumulative bucket counts, interpolated
    linearly within its bucket as Prometheus's histogram_quantile does (the first bucket from
    0; the one above every bound answers that bound, as histogram_quantile does for +Inf)."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(OCSP_BUCKETS):
                return OCSP_BUCKETS[-1] * 1000
            low = OCSP_BUCKETS[i - 1] if i else 0.0
            high = OCSP_BUCKETS[i]
            return (low + (high - low) * (rank - seen) / count) * 1000
        seen += count
    return OCSP_BUCKETS[-1] * 1000  # pragma: no cover - the loop always answers
