"""The limits every node must agree on, kept in the database: the token buckets nodes lease
blocks of tokens from (jpki.rate_limits) and the budgets of failed authentications
(jpki.access.auth_throttle).

Each change is one statement — an INSERT … ON CONFLICT DO UPDATE … RETURNING — so the row is
read, refilled, taken from and written under the row lock the statement holds, whichever node
sends it and however many send at once (PostgreSQL re-evaluates the SET expressions on the row
as committed by the writer it waited for; SQLite has one writer). The refill is computed in SQL
from the row's own last time and the *database's* clock (``now()``, SQLite's ``'now'``: both
the same for the whole statement), never a node's, so nodes whose clocks disagree still agree.
A statement that waited for the row lock sees a time older than the row's: it refills nothing
and leaves the row's time where it was (``GREATEST``), so no interval is counted twice.

Tests may pass ``at`` (seconds) instead, to move time themselves; one table must then be used
with one kind of clock.

On PostgreSQL a lease commits on its own (autocommit: one round trip), and the failures of one
check (its address's and its id's) in one transaction; durably, with the replication the
deployment has, like any other commit: a lease acknowledged to a node is never handed out again
after a crash or a failover. On SQLite each is a write transaction of the one writer
(jpki.store.engine).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from jpki.access.auth_throttle import Counted, Failure
from jpki.rate_limits import Lease


@dataclass(frozen=True)
class _Dialect:
    now: str  # the database's clock, seconds since the epoch
    least: str
    greatest: str
    floor: str  # of a non-negative number


_POSTGRES = _Dialect(now="CAST(EXTRACT(EPOCH FROM now()) AS double precision)",
                     least="LEAST", greatest="GREATEST", floor="FLOOR")
# julianday('now') is fixed for the whole of one statement (SQLite: "Date And Time Functions").
_SQLITE = _Dialect(now="((julianday('now') - 2440587.5) * 86400.0)", least="min",
                   greatest="max", floor="")  # CAST(... AS INTEGER) truncates: the floor


def _lease_sql(d: _Dialect, now: str) -> str:
    avail = (f"{d.least}(:burst, b.tokens + {d.greatest}(0, {now} - b.refilled_at) * :rate)")
    grant = f"CAST({d.greatest}(0, {d.least}(:want, {d.floor}({avail}))) AS INTEGER)"
    refilled = f"{d.greatest}(b.refilled_at, {now})"
    # Only this module's fragments and bound parameters: nothing from a caller is spliced.
    return f"""
INSERT INTO rate_buckets AS b (scope, subject, tokens, refilled_at, granted, full_at)
VALUES (:scope, :subject, :burst - :want, {now}, :want, {now} + :want / :rate)
ON CONFLICT (scope, subject) DO UPDATE SET
  tokens = {avail} - {grant},
  granted = {grant},
  full_at = {refilled} + (:burst - ({avail} - {grant})) / :rate,
  refilled_at = {refilled}
RETURNING granted, tokens"""  # noqa: S608


def _count_sql(d: _Dialect, now: str) -> str:
    avail = (f"{d.least}(:burst, f.remaining + {d.greatest}(0, {now} - f.counted_at) * :rate)")
    # Into debt, down to minus one budget: a failure that slipped past a check while the budget
    # was being spent elsewhere still counts, and keeps the key blocked for longer
    # (jpki.access.auth_throttle).
    left = f"{d.greatest}(-:burst, {avail} - 1)"
    counted = f"{d.greatest}(f.counted_at, {now})"
    first = f"{d.greatest}(0, :burst - 1)"
    return f"""
INSERT INTO auth_failures AS f (kind, subject, remaining, counted_at, blocked_until,
                                reported, reported_at, whole_at)
VALUES (:kind, :subject, {first}, {now},
        CASE WHEN {first} < 1 THEN {now} + (1 - {first}) / :rate END,
        CASE WHEN {first} < 1 THEN 1 ELSE 0 END,
        CASE WHEN {first} < 1 THEN {now} END,
        {now} + (:burst - {first}) / :rate)
ON CONFLICT (kind, subject) DO UPDATE SET
  remaining = {left},
  blocked_until = CASE WHEN {left} < 1 THEN {counted} + (1 - {left}) / :rate END,
  reported = CASE WHEN {left} < 1 AND (f.reported_at IS NULL
                                       OR {now} - f.reported_at >= :window)
                  THEN 1 ELSE 0 END,
  reported_at = CASE WHEN {left} < 1 AND (f.reported_at IS NULL
                                          OR {now} - f.reported_at >= :window)
                     THEN {now} ELSE f.reported_at END,
  whole_at = {counted} + (:burst - {left}) / :rate,
  counted_at = {counted}
RETURNING blocked_until - {now}, reported"""  # noqa: S608


def _blocked_sql(now: str) -> str:
    return f"""
SELECT kind, subject, blocked_until - {now} FROM auth_failures
WHERE blocked_until > {now} ORDER BY blocked_until DESC LIMIT :limit"""  # noqa: S608


class SqlLimits:
    """The store's side of the shared limits: :class:`jpki.rate_limits.TokenLedger` and
    :class:`jpki.access.auth_throttle.FailureLedger`. Writes on ``engine``, the blocked keys
    read on ``read_engine``."""

    def __init__(self, engine: Engine, read_engine: Engine | None = None) -> None:
        self._engine = engine
        self._read_engine = read_engine or engine
        self._sqlite = engine.dialect.name == "sqlite"
        d = _SQLITE if self._sqlite else _POSTGRES
        # Built once: the statement text for the database's clock and for a given one.
        self._lease = {False: text(_lease_sql(d, d.now)), True: text(_lease_sql(d, ":at"))}
        self._count = {False: text(_count_sql(d, d.now)), True: text(_count_sql(d, ":at"))}
        self._blocked = {False: text(_blocked_sql(d.now)), True: text(_blocked_sql(":at"))}
        self._purge = {
            given: (text(f"DELETE FROM rate_buckets WHERE full_at < {now}"),  # noqa: S608
                    text(f"DELETE FROM auth_failures WHERE whole_at < {now}"))  # noqa: S608
            for given, now in ((False, d.now), (True, ":at"))}

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._sqlite:
            with self._engine.begin() as conn:  # BEGIN IMMEDIATE under the writer lock
                yield conn
        else:
            # One statement, one round trip: it commits as it completes.
            with self._engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as conn:
                yield conn

    @contextmanager
    def _write_many(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE under the writer lock
            yield conn

    def lease(self, scope: str, subject: str, want: int, rate: float, burst: int,
              at: float | None = None) -> Lease:
        params = {"scope": scope, "subject": subject[:64], "want": want, "rate": rate,
                  "burst": burst, "at": at}
        with self._write() as conn:
            granted, tokens = conn.execute(self._lease[at is not None], params).one()
        return Lease(granted=int(granted),
                     wait=0.0 if granted else max(0.0, (1.0 - float(tokens)) / rate))

    def count(self, failures: Sequence[Failure], at: float | None = None) -> list[Counted]:
        counted = []
        # One transaction for the address's and the id's: one commit (one flush) for both.
        with self._write_many() as conn:
            for f in failures:
                params = {"kind": f.kind, "subject": f.subject[:64], "burst": f.burst,
                          "rate": f.rate, "window": f.window, "at": at}
                blocked_for, report = conn.execute(self._count[at is not None], params).one()
                counted.append(Counted(
                    blocked_for=None if blocked_for is None else float(blocked_for),
                    report=bool(report)))
        return counted

    def blocked(self, limit: int, at: float | None = None) -> list[tuple[str, str, float]]:
        with self._read_engine.connect() as conn:
            rows = conn.execute(self._blocked[at is not None], {"limit": limit, "at": at})
            return [(kind, subject, float(left)) for kind, subject, left in rows]

    def purge(self, at: float | None = None) -> dict[str, int]:
        """Delete the rows of whole buckets and budgets: a missing row is a whole one."""
        buckets, failures = self._purge[at is not None]
        with self._write() as conn:
            deleted_buckets = conn.execute(buckets, {"at": at}).rowcount
            deleted_failures = conn.execute(failures, {"at": at}).rowcount
        return {"buckets": deleted_buckets, "budgets": deleted_failures}
