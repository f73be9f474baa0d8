"""Engines for the two supported databases, configured for durability.

SQLite (the embedded default): WAL journal with ``synchronous=FULL`` so that a committed
transaction — an acknowledged revocation, a recorded issuance intent — survives a killed process
or a power cut (non-negotiable 4); ``BEGIN IMMEDIATE`` for write transactions so two writers
never deadlock upgrading read locks; foreign keys on. Read-only units of work use a second engine
whose transactions start deferred, so readers never wait for writers (WAL).

PostgreSQL: psycopg 3; commits are durable by default (``synchronous_commit=on``). A pooled
connection is pinged before use only after sitting idle (:func:`_ping_when_idle`), not on every
checkout.

Both hide bound parameters from SQLAlchemy's error messages: a failed INSERT of a resident would
otherwise carry the basic 4 information into an exception's text (non-negotiable 7).

A value the database refuses to take — a NUL in a text (PostgreSQL cannot store one), text that
is not Unicode (a lone surrogate from a JSON escape), an integer out of range — comes from the
request, not from a fault of the service: it is raised as :class:`UnstorableValue` (invalid
input, HTTP 400), never as an internal error whose traceback would quote the statement. The
edge refuses such values first (api.request_fields); this is the net under it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DataError, DisconnectionError

from jpki.errors import UnstorableValue


def normalise_url(url: str) -> str:
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _unstorable(context: ExceptionContext) -> BaseException | None:
    """The ``handle_error`` hook: a refused value becomes UnstorableValue (see above)."""
    if isinstance(context.sqlalchemy_exception, DataError) or isinstance(
            context.original_exception, UnicodeEncodeError | OverflowError):
        return UnstorableValue("a value in the request cannot be stored (a NUL or other text "
                               "no database holds, or a number out of range)")
    return None


def create_store_engine(url: str, *, read_only: bool = False, pool_size: int = 8) -> Engine:
    engine = _create(url, read_only=read_only, pool_size=pool_size)
    event.listen(engine, "handle_error", _unstorable)
    return engine


# The writer lock of each SQLite engine (below), for a writer that must hold it longer than
# the begin/commit events do (jpki.store.audit_writer).
_WRITER_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def writer_lock(engine: Engine) -> threading.RLock | None:
    """The lock this process's writers take before ``BEGIN IMMEDIATE`` on ``engine`` (a SQLite
    engine that writes), or None (PostgreSQL, or a read-only engine)."""
    return _WRITER_LOCKS.get(engine)


def _create(url: str, *, read_only: bool, pool_size: int) -> Engine:
    url = normalise_url(url)
    if is_sqlite(url):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=pool_size, max_overflow=pool_size,
                               hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below issue BEGIN itself.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        if read_only:
            @event.listens_for(engine, "begin")
            def _on_begin_read(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN")

            return engine

        # SQLite has one writer at a time. Threads of this process queue on a Python lock
        # instead of in SQLite's busy handler, which sleeps in steps of up to 100 ms and made
        # a waiting writer lose up to a second under load (bench/issuance.py); other processes
        # still meet busy_timeout. Re-entrant, so that a thread opening a second unit of work
        # inside a first one gets SQLite's own answer (busy, then "database is locked") rather
        # than waiting on itself forever.
        writer = threading.RLock()
        _WRITER_LOCKS[engine] = writer

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            writer.acquire()
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                writer.release()
                raise

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _on_end(conn: Any) -> None:
            with contextlib.suppress(RuntimeError):  # not held by this thread
                writer.release()

        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size,
                           hide_parameters=True)
    _ping_when_idle(engine)
    return engine


# A pooled connection idle for longer than this is pinged before use (see below).
IDLE_PING_SECONDS = 30.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled PostgreSQL connection before use only when it has sat idle.

    ``pool_pre_ping`` pings on every checkout: one more round trip per unit of work, 0.4 ms
    of a card issuance's 1.25 ms budget (bench/issuance.py). A connection in steady use was
    proven alive by its last transaction moments ago; one that sat idle may have been closed
    by the server, a restart or a firewall meanwhile, and is pinged with the same probe
    pre-ping uses. A failed probe raises DisconnectionError, on which the pool discards the
    connection and checks out another (SQLAlchemy's pessimistic disconnect handling), so a
    restarted server costs no request an error. A connection broken in use is still seen by
    the statement that meets it, which invalidates the pool as before.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            alive = dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("an idle pooled connection is gone") from exc
        if not alive:  # pragma: no cover - psycopg's probe raises rather than returns False
            raise DisconnectionError("an idle pooled connection is gone")
