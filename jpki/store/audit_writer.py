"""The group commit's own connection: audit batches as plain statements (jpki.group_audit).

Every status and basic 4 call waits for its audit record's group commit, and each batch used to
cost about 1 ms of CPU whatever its size — a session and its repositories, a pooled connection
checked out and back, the head and the appends through SQLAlchemy — where the same append on
the driver costs 0.2 ms (docs/performance.md, relying-party API). So the group commit's batches
run here instead: one connection kept by the writer, the head read and locked, the multi-row
INSERT and the head UPDATE on the driver's cursor, one durable commit. The records themselves
— numbers, content, MACs — are made by jpki.audit exactly as for a unit of work
(:meth:`jpki.audit.AuditLog.chained`); what this module writes is what the unit of work's
repository writes, the time column converted by the column's own type, so ``jpki audit verify``
cannot tell the two writers apart.

Locks and durability, as for any writer (jpki.store.engine):

- SQLite: this process's writer lock is taken first and held until the commit has returned
  (the engine's own begin/commit events release it just *before* the driver commits, so a
  writer of this process could otherwise meet the commit's fsync in SQLite's busy handler),
  then ``BEGIN IMMEDIATE`` — the database's write lock, which other processes meet in their
  busy timeout. The connection is the engine's, so WAL with ``synchronous=FULL``: the commit
  is durable when it returns.
- PostgreSQL: the head row is read ``FOR UPDATE``, which serialises the batch with every other
  writer of the chain in every process; a standing consent is locked (``FOR UPDATE OF
  consents``) before it, in the order every writer takes them. Commits are durable by default
  (``synchronous_commit=on``).

A batch either commits whole or rolls back whole; after a failure the connection is given back
(invalidated if the driver says it is broken) and the next batch takes another. A connection
that sat idle longer than :data:`jpki.store.engine.IDLE_PING_SECONDS` is given back before use
too, so that the next one passes the pool's check for a connection the server may have closed.

The checks of the records (a standing consent read with its resident and signer, locked) run on
the same connection, in the same transaction: ``consents.standing``'s Core statement, compiled
once and run on the cursor, its columns converted by their types; the rare walk of a renewed line
reads through a session joined to this connection's transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Dialect, Engine
from sqlalchemy.orm import Session

from jpki.audit import GENESIS_MAC
from jpki.model import AuditRecord, StandingConsent
from jpki.ports import AuditBatch, StandingConsentReads, SuccessorReads
from jpki.store.engine import IDLE_PING_SECONDS, writer_lock
from jpki.store.repositories import SqlCertificates
from jpki.store.rp_repositories import standing_from, standing_statement
from jpki.store.tables import audit_log, map_entities

_COLUMNS = "seq, at, actor, action, subject, payload, prev_mac, mac, request_id"


class _Statements:
    """The batch's statements in the driver's parameter style, built once per engine. Their
    text holds only these constant names and placeholders, never a value (hence the noqa)."""

    def __init__(self, engine: Engine) -> None:
        sqlite = engine.dialect.name == "sqlite"
        mark = "?" if sqlite else "%s"
        self.mark = mark
        # SQLite: BEGIN IMMEDIATE already holds the database's write lock.
        head = "SELECT seq, mac FROM audit_head WHERE id = 1"
        self.head = head if sqlite else head + " FOR UPDATE"
        self.new_head = (f"INSERT INTO audit_head (id, seq, mac) "  # noqa: S608
                         f"VALUES (1, 0, {mark})")
        self.set_head = (f"UPDATE audit_head SET seq = {mark}, mac = {mark} "  # noqa: S608
                         "WHERE id = 1")
        # The column type's own conversion (UtcDateTime, then the dialect's DATETIME), so the
        # stored value is the one the unit of work's INSERT stores.
        dialect = engine.dialect
        convert = audit_log.c.at.type.dialect_impl(dialect).bind_processor(dialect)
        self.at: Callable[[datetime], Any] = convert or (lambda at: at)
        self._sqlite = sqlite
        self.one_statement = not sqlite
        self.append = cache(self._append)
        self.standing = {flag: _StandingQuery(dialect, flag) for flag in (False, True)}

    def _append(self, rows: int) -> str:
        """The INSERT of ``rows`` records and the head's UPDATE (its parameters last): on
        PostgreSQL one statement, the INSERT in a WITH, so one round trip to the server; SQLite
        runs the two in turn (sqlite3 takes one statement per execute)."""
        values = "(" + ", ".join([self.mark] * 9) + ")"
        insert = (f"INSERT INTO audit_log ({_COLUMNS}) VALUES "  # noqa: S608
                  + ", ".join([values] * rows))
        if self._sqlite:
            return insert
        return f"WITH appended AS ({insert}) {self.set_head}"


class _StandingQuery:
    """consents.standing's statement (jpki.store.rp_repositories) compiled once for the
    dialect and run on the driver's cursor, each column converted by its type's own result
    processing — the row SQLAlchemy would give, without its execution machinery (a third of
    a basic 4 call's reads on PostgreSQL)."""

    def __init__(self, dialect: Dialect, for_update: bool) -> None:
        stmt = standing_statement(for_update)
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        # Every parameter but the consent's id is a constant of the statement (the status of
        # a successor): converted by its type once.
        fixed: dict[str, Any] = {}
        for name, bind in compiled.binds.items():
            if name != "consent_id":
                convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
                fixed[name] = convert(bind.value) if convert else bind.value
        self._fixed = fixed
        self._order = list(compiled.positiontup or ()) if compiled.positional else None
        self._names = list(stmt.selected_columns.keys())
        self._convert = [c.type.dialect_impl(dialect).result_processor(dialect, None)
                         for c in stmt.selected_columns]

    def params(self, consent_id: str) -> Sequence[Any] | dict[str, Any]:
        values = {**self._fixed, "consent_id": consent_id}
        return values if self._order is None else [values[n] for n in self._order]

    def row(self, raw: Sequence[Any]) -> StandingConsent:
        values = {name: convert(value) if convert is not None and value is not None
                  else value
                  for name, convert, value in zip(self._names, self._convert, raw, strict=True)}
        return standing_from(SimpleNamespace(**values))


class _Consents:
    def __init__(self, batch: _Batch) -> None:
        self._batch = batch

    def standing(self, consent_id: str, *, for_update: bool = False) -> StandingConsent | None:
        query = self._batch.statements.standing[for_update]
        cur = self._batch.cursor
        cur.execute(query.sql, query.params(consent_id))
        raw = cur.fetchone()
        return None if raw is None else query.row(raw)


class _Batch:
    """One transaction on the writer's connection (:class:`jpki.ports.AuditBatch`)."""

    def __init__(self, conn: Connection, statements: _Statements) -> None:
        self._conn = conn
        self.statements = statements
        driver = conn.connection.dbapi_connection
        assert driver is not None
        self.cursor = driver.cursor()
        self._session: Session | None = None
        self.committed = False

    @property
    def consents(self) -> StandingConsentReads:
        return _Consents(self)

    @property
    def certificates(self) -> SuccessorReads:
        # Only a renewed line, or a phone's line that ended, is walked (rare): through the ORM,
        # in this transaction, which the session joins and never ends.
        if self._session is None:
            self._session = Session(bind=self._conn, join_transaction_mode="rollback_only",
                                    autoflush=False)
        return SqlCertificates(self._session)

    def head(self) -> tuple[int, str]:
        cur = self.cursor
        cur.execute(self.statements.head)
        row = cur.fetchone()
        if row is None:  # the migration creates the row; an empty table means a fresh schema
            cur.execute(self.statements.new_head, (GENESIS_MAC,))
            return 0, GENESIS_MAC
        return int(row[0]), str(row[1])

    def append(self, records: Sequence[AuditRecord]) -> None:
        at = self.statements.at
        params: list[Any] = []
        for r in records:
            params += (r.seq, at(r.at), r.actor, r.action, r.subject, r.payload, r.prev_mac,
                       r.mac, r.request_id)
        last = records[-1]
        sql = self.statements
        if sql.one_statement:
            self.cursor.execute(sql.append(len(records)), [*params, last.seq, last.mac])
        else:
            self.cursor.execute(sql.append(len(records)), params)
            self.cursor.execute(sql.set_head, (last.seq, last.mac))

    def commit(self) -> None:
        self._conn.commit()
        self.committed = True

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self.cursor.close()


class SqlAuditWriter:
    """The group commit's batches (:data:`jpki.ports.AuditBatchFactory`) on a connection of
    its own, used by one batch at a time (the group commit leads one batch at a time; a lock
    here makes sure)."""

    def __init__(self, engine: Engine) -> None:
        map_entities()  # the rare walk of a line reads certificates through the ORM
        self._engine = engine
        self._sql = _Statements(engine)
        self._writer_lock = writer_lock(engine)
        self._use = threading.Lock()
        self._conn: Connection | None = None
        self._last_used = 0.0

    @contextmanager
    def __call__(self) -> Iterator[AuditBatch]:
        with self._use:
            conn = self._connection()
            writer = self._writer_lock
            if writer is not None:
                writer.acquire()
            batch: _Batch | None = None
            try:
                conn.begin()  # SQLite: BEGIN IMMEDIATE (the engine's begin event)
                batch = _Batch(conn, self._sql)
                yield batch
                if not batch.committed:
                    conn.rollback()
            except BaseException:
                self._discard(conn)
                raise
            finally:
                if batch is not None:
                    batch.close()
                if writer is not None:
                    writer.release()  # only now: the commit's fsync is behind us
                self._last_used = time.monotonic()

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is not None and time.monotonic() - self._last_used > IDLE_PING_SECONDS:
            conn.close()  # back to the pool, whose checkout pings one that sat idle
            conn = self._conn = None
        if conn is None:
            conn = self._conn = self._engine.connect()
        return conn

    def _discard(self, conn: Connection) -> None:
        """After a failure: roll back what is left and give the connection back."""
        self._conn = None
        try:
            if conn.in_transaction():
                conn.rollback()
        except Exception:  # a broken connection: the pool invalidates it on close
            conn.invalidate()
        conn.close()

    def close(self) -> None:
        with self._use:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
