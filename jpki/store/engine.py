"""Engines for the two supported databases, configured for durability.

SQLite (the embedded default): WAL journal with ``synchronous=FULL`` so that a committed
transaction — an acknowledged revocation, a recorded issuance intent — survives a killed process
or a power cut (non-negotiable 4); ``BEGIN IMMEDIATE`` for write transactions so two writers
never deadlock upgrading read locks; foreign keys on. Read-only units of work use a second engine
whose transactions start deferred, so readers never wait for writers (WAL).

PostgreSQL: psycopg 3; commits are durable by default (``synchronous_commit=on``).

Both hide bound parameters from SQLAlchemy's error messages: a failed INSERT of a resident would
otherwise carry the basic 4 information into an exception's text (non-negotiable 7).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def normalise_url(url: str) -> str:
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_store_engine(url: str, *, read_only: bool = False, pool_size: int = 8) -> Engine:
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

        begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                         hide_parameters=True)
