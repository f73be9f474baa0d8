"""A lease that one process of the whole deployment holds: a PostgreSQL advisory lock.

Housekeeping (abandoning stale intents, sweeps, responder renewal, CRL publication) must run once
across every node (docs/deployment.md, "Jobs run once"). A file lock in the data directory only
says that within one host; on several hosts sharing one database each would take its own and
every job would run on every host. A session-level advisory lock (PostgreSQL manual §13.3.5)
lives where the data does: the database holds it for the session that took it and drops it when that
session ends — a killed process, a closed connection, a failover that cuts the sessions — so
that another node can take it over.

The lease is checked before each run, never assumed: :meth:`AdvisoryLease.held` confirms in
``pg_locks`` that this very session still holds the lock, and if the session is gone, tries to
take the lock again on a new one. A lease is not a fence: a holder that loses its session in the
middle of a run finishes that run, so the jobs must tolerate an overlap (they work on rows, under
the database's own constraints).
"""

from __future__ import annotations

import logging
import os

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from jpki.store.engine import normalise_url

log = logging.getLogger("jpki.store.leases")

# pg_try_advisory_lock(int4, int4): the first key is jpki's ("jpki" in ASCII), so that another
# application's advisory locks in the same database never collide with ours; the second names
# the lease. In pg_locks the pair is (classid, objid) with objsubid 2.
NAMESPACE = 0x6A706B69
LEASES = {"maintenance": 1}

# The lease's own session: a dead peer is noticed by TCP keepalives within seconds instead of
# hours, and a server that does not answer is given up on after a few seconds.
_CONNECT_ARGS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 5,
                 "keepalives_interval": 2, "keepalives_count": 3}


def application_name(name: str) -> str:
    """What the lease's session is called in pg_stat_activity: which lease, which process (the
    holder seen from the database, e.g. by `scripts/cluster status`)."""
    return f"jpki lease {name} pid {os.getpid()}"


class AdvisoryLease:
    """The lease ``name`` on the PostgreSQL database at ``url``, on a connection of its own (not
    the pool's: it is held for as long as the lease)."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self._key = LEASES[name]
        self._engine: Engine = create_engine(normalise_url(url), poolclass=NullPool,
                                             hide_parameters=True,
                                             connect_args={
                                                 **_CONNECT_ARGS,
                                                 "application_name": application_name(name)},
                                             isolation_level="AUTOCOMMIT")
        self._conn: Connection | None = None

    def held(self) -> bool:
        """Whether this process holds the lease now, taking it if nobody does. Never raises: a
        database that cannot be reached means "not held"."""
        if self._conn is not None:
            try:
                if self._still_held(self._conn):
                    return True
            except Exception as exc:  # the session is gone (failover, restart, network)
                log.warning("lease %s: its session ended (%s)", self.name, type(exc).__name__)
            self._drop()
        try:
            conn = self._engine.connect()
        except Exception as exc:
            log.warning("lease %s: no database (%s)", self.name, type(exc).__name__)
            return False
        try:
            taken = bool(conn.execute(text("SELECT pg_try_advisory_lock(:ns, :key)"),
                                      {"ns": NAMESPACE, "key": self._key}).scalar_one())
        except Exception as exc:
            log.warning("lease %s: not taken (%s)", self.name, type(exc).__name__)
            conn.close()
            return False
        if not taken:  # another process holds it: keep no idle session for nothing
            conn.close()
            return False
        self._conn = conn
        log.info("lease %s taken", self.name)
        return True

    def _still_held(self, conn: Connection) -> bool:
        return bool(conn.execute(text(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
            "AND pid = pg_backend_pid() AND granted AND classid = :ns AND objid = :key "
            "AND objsubid = 2)"), {"ns": NAMESPACE, "key": self._key}).scalar_one())

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # already broken: nothing to give back
                log.debug("lease %s: close failed (%s)", self.name, type(exc).__name__)

    def release(self) -> None:
        """Give the lease up (closing its session releases the lock) and free the engine."""
        self._drop()
        self._engine.dispose()
