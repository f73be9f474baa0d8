"""Store adapters for CRLs: numbering and publications (in the unit of work), and the streaming
read of revoked certificates' entries (a snapshot on a read-only engine).

The entry stream uses SQLAlchemy to compile the statement and bind its parameters, then reads the
driver cursor directly: row objects cost ~0.5 µs each, which at 10^6 entries is half a second for
nothing (measured: 0.89 s through Result.partitions, 0.39 s from the cursor, SQLite).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    exists,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from jpki.model import CrlPublication, DeltaRow
from jpki.municipalities import CrlShard
from jpki.store.tables import (
    ca_generations,
    certificates,
    crl_numbers,
    crl_publications,
    crl_shards,
)

_T = certificates


class SqlCrls:
    """Repository: CRL numbers and publications."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def next_number(self, generation_id: int, scope: str) -> int:
        """Allocate the next CRL number of a scope (RFC 5280 §5.2.3: monotonically increasing,
        one sequence for full and delta CRLs). The row lock serialises concurrent publishers."""
        key = and_(crl_numbers.c.ca_generation_id == generation_id, crl_numbers.c.scope == scope)
        locked = select(crl_numbers.c.last_number).where(key).with_for_update()
        row = self._s.execute(locked).first()
        if row is None:
            # A scope's first CRL: two publishers (the first requests of a fresh shard's full
            # and delta CRL, in two processes) may both find no row; the second insert then
            # does nothing, and its publisher waits on the row the first one locked.
            dialect = self._s.get_bind().dialect.name
            first = (pg_insert if dialect == "postgresql" else sqlite_insert)(crl_numbers)
            self._s.execute(first.values(ca_generation_id=generation_id, scope=scope,
                                         last_number=0).on_conflict_do_nothing())
            row = self._s.execute(locked).one()
        number = int(row.last_number) + 1
        self._s.execute(update(crl_numbers).where(key).values(last_number=number))
        return number

    def add(self, publication: CrlPublication) -> None:
        self._s.add(publication)
        self._s.flush()
        # The scope's newest times (CrlService.due), never moved back by a slower publisher.
        column = crl_numbers.c.last_full_at if publication.kind == "full" \
            else crl_numbers.c.last_delta_at
        self._s.execute(update(crl_numbers).where(
            crl_numbers.c.ca_generation_id == publication.ca_generation_id,
            crl_numbers.c.scope == publication.scope,
            or_(column.is_(None), column < publication.this_update))
            .values({column.key: publication.this_update}))

    def scope_times(self) -> dict[tuple[int, str], tuple[datetime | None, datetime | None]]:
        """(generation id, scope) → the thisUpdate of its newest full and delta CRL."""
        n = crl_numbers.c
        return {(int(r.ca_generation_id), r.scope): (r.last_full_at, r.last_delta_at)
                for r in self._s.execute(select(n.ca_generation_id, n.scope, n.last_full_at,
                                                n.last_delta_at))}

    def shards(self) -> list[CrlShard]:
        return [CrlShard(r.name, r.municipality_code, r.prefecture_romaji, r.city_romaji,
                         closed_at=r.closed_at)
                for r in self._s.execute(select(crl_shards).order_by(crl_shards.c.name))]

    def shard(self, name: str) -> CrlShard | None:
        r = self._s.execute(select(crl_shards).where(crl_shards.c.name == name)).first()
        return CrlShard(r.name, r.municipality_code, r.prefecture_romaji, r.city_romaji,
                        closed_at=r.closed_at) if r else None

    def live_scopes(self, generation_ids: Sequence[int], floor: datetime) -> set[tuple[int, str]]:
        """(generation id, shard) pairs that need a CRL (jpki.revocation.crls): published
        already, or with a certificate issued under them — for a closed shard, one whose
        notAfter is not before ``floor``. One statement: an index probe per pair
        (ix_certificates_shard_revoked), ~3,800 of them for a nation."""
        if not generation_ids:
            return set()
        g, sh, c = ca_generations.c, crl_shards.c, _T.c
        issued = exists().where(c.ca_generation_id == g.id, c.shard == sh.name,
                                or_(sh.closed_at.is_(None), c.not_after >= floor))
        published = exists().where(crl_numbers.c.ca_generation_id == g.id,
                                   crl_numbers.c.scope == sh.name,
                                   crl_numbers.c.last_full_at.is_not(None))
        stmt = (select(g.id, sh.name).select_from(ca_generations.join(crl_shards, true()))
                .where(g.id.in_(list(generation_ids)),
                       or_(issued, and_(published, sh.closed_at.is_(None)))))
        return {(int(r[0]), r[1]) for r in self._s.execute(stmt)}

    def latest(self, generation_id: int, scope: str, kind: str) -> CrlPublication | None:
        p = crl_publications.c
        stmt = (select(CrlPublication)
                .where(p.ca_generation_id == generation_id, p.scope == scope, p.kind == kind)
                .order_by(p.number.desc()).limit(1))
        return self._s.execute(stmt).scalars().first()

    def older_than(self, generation_id: int, scope: str, kind: str,
                   keep: int) -> Sequence[CrlPublication]:
        p = crl_publications.c
        stmt = (select(CrlPublication)
                .where(p.ca_generation_id == generation_id, p.scope == scope, p.kind == kind)
                .order_by(p.number.desc()).offset(keep))
        return list(self._s.execute(stmt).scalars())


def _full_filter(generation_id: int, shard: str, at: datetime, floor: datetime):  # type: ignore[no-untyped-def]
    return and_(_T.c.ca_generation_id == generation_id, _T.c.shard == shard,
                _T.c.revoked_at.is_not(None), _T.c.revoked_at <= at,
                _T.c.not_after >= floor, _T.c.crl_entry.is_not(None))


class SqlCrlSnapshot:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def full_stats(self, generation_id: int, shard: str, at: datetime,
                   floor: datetime) -> tuple[int, int]:
        row = self._conn.execute(
            select(func.count(), func.coalesce(func.sum(func.length(_T.c.crl_entry)), 0))
            .where(_full_filter(generation_id, shard, at, floor))).one()
        return int(row[0]), int(row[1])

    def full_entries(self, generation_id: int, shard: str, at: datetime, floor: datetime,
                     batch: int = 20_000) -> Iterator[bytes]:
        """The entries of :meth:`full_stats`, as concatenated DER, from the driver's cursor (a
        server-side cursor on PostgreSQL, so rows are never all in memory)."""
        dialect = self._conn.dialect
        to_db = _T.c.revoked_at.type.dialect_impl(dialect).bind_processor(dialect)
        at_param, floor_param = (to_db(at), to_db(floor)) if to_db else (at, floor)
        # The same filter as _full_filter, spelled out for the driver; only the parameter marker
        # varies (fixed strings: no input is ever formatted into the SQL).
        sql = ("SELECT crl_entry FROM certificates WHERE ca_generation_id = ? AND shard = ? "
               "AND revoked_at IS NOT NULL AND revoked_at <= ? AND not_after >= ? "
               "AND crl_entry IS NOT NULL")
        if dialect.name != "sqlite":
            sql = sql.replace("?", "%s")
        params = (generation_id, shard, at_param, floor_param)
        driver = self._conn.connection.driver_connection
        assert driver is not None
        if dialect.name == "postgresql":
            cursor = driver.cursor(name="jpki_crl_entries")  # server-side
        else:
            cursor = driver.cursor()
        try:
            cursor.execute(sql, params)
            while True:
                rows = cursor.fetchmany(batch)
                if not rows:
                    return
                yield b"".join([bytes(r[0]) for r in rows])
        finally:
            cursor.close()

    def delta(self, generation_id: int, shard: str, since: datetime, at: datetime,
              floor: datetime) -> list[DeltaRow]:
        """Certificates whose revocation took effect, changed, or was released since ``since``
        (inclusive: an entry in both the base and its delta is harmless, a missed one is not).

        Two statements, each driven by its own index, merged by serial: a single OR across
        three columns makes both engines scan every row of the shard (EXPLAIN QUERY PLAN).
        Every change of status writes ``revocation_recorded_at`` (jpki.lifecycle.revocation:
        set_revocation and release_hold), so the second statement also finds hold releases.
        """
        cols = (_T.c.serial, _T.c.revoked_at, _T.c.crl_entry, _T.c.hold_released_at)
        scope = (_T.c.ca_generation_id == generation_id, _T.c.shard == shard,
                 _T.c.not_after >= floor)
        took_effect = select(*cols).where(*scope, _T.c.revoked_at >= since, _T.c.revoked_at <= at)
        recorded = select(*cols).where(*scope, _T.c.revocation_recorded_at >= since)
        rows = {r.serial: r for query in (took_effect, recorded)
                for r in self._conn.execute(query)}
        out = []
        for r in rows.values():
            effective = r.revoked_at is not None and r.revoked_at <= at
            released = r.hold_released_at is not None and r.hold_released_at >= since
            if effective or released:
                out.append(DeltaRow(serial=r.serial, revoked_at=r.revoked_at if effective
                                    else None, crl_entry=r.crl_entry,
                                    hold_released_at=r.hold_released_at))
        return out


class SqlCrlEntrySource:
    """Consistent snapshots for CRL generation, on a read-only engine (SQLite: deferred BEGIN,
    so writers are never blocked; PostgreSQL: REPEATABLE READ)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def snapshot(self) -> Iterator[SqlCrlSnapshot]:
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield SqlCrlSnapshot(conn)
