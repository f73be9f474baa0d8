"""The maintenance lease: who runs the housekeeping — one process of the deployment at a time
(architecture §8, docs/deployment.md "Jobs run once").

On SQLite the database is a file on one host, so an exclusive lock on ``<data>/maintenance.lock``
is the whole deployment's; on PostgreSQL, which jpki nodes on several hosts may share, it is an
advisory lock in the database (jpki.store.leases). `jpki serve` asks before every run;
a command that runs a job by hand (`jpki mobile sweep`) asks once and steps aside if a server
holds it. Apart from api.app, so that a CLI command can take the lease without loading the web
application.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO, Protocol

from jpki.settings import Settings
from jpki.store.engine import is_sqlite
from jpki.store.leases import AdvisoryLease


def _maintenance_lock(data_dir: Path) -> IO[bytes] | None:
    """An exclusive lock on ``<data>/maintenance.lock``, or None if another process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "maintenance.lock").open("a+b")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


class MaintenanceLease(Protocol):
    """Who runs the housekeeping: one process of the deployment at a time (docs/deployment.md,
    "Jobs run once"), asked before every run so that another takes over when the holder dies."""

    def held(self) -> bool: ...

    def release(self) -> None: ...


class FileLease:
    """SQLite: the database is a file on one host, so a file lock beside it is the whole
    deployment's (the worker processes of one `jpki serve`)."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._handle: IO[bytes] | None = None

    def held(self) -> bool:
        if self._handle is None:
            self._handle = _maintenance_lock(self._data_dir)
        return self._handle is not None

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def maintenance_lease(settings: Settings) -> MaintenanceLease:
    """PostgreSQL may be shared by jpki nodes on several hosts, whose file locks would each be
    taken (every job run once per host): there the lease is an advisory lock in the database
    (jpki.store.leases, docs/deployment.md)."""
    url = settings.resolved_database_url
    if is_sqlite(url):
        return FileLease(settings.resolved_data_dir)
    return AdvisoryLease(url, "maintenance")
