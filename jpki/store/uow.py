"""The SQLAlchemy unit of work: one session, one transaction, repositories bound to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from jpki.store.console import SqlConsole
from jpki.store.crls import SqlCrls
from jpki.store.dv_requests import SqlDvRequests
from jpki.store.issuance import SqlIssuanceRecords
from jpki.store.jobs import SqlJobRuns
from jpki.store.mobile_sweeps import SqlMobileSweeps
from jpki.store.pin_reset import SqlPinReset
from jpki.store.repositories import (
    SqlAudit,
    SqlCards,
    SqlCas,
    SqlCertificates,
    SqlClients,
    SqlMobile,
    SqlMunicipalities,
    SqlOcspResponses,
    SqlProofings,
    SqlResidents,
)
from jpki.store.rp_repositories import SqlConsents, SqlRelyingParties
from jpki.store.station_tasks import SqlStationTasks
from jpki.store.tables import map_entities


class SqlUnitOfWork:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._session: Session | None = None
        self._on_commit: list[Callable[[], None]] = []
        self._after_commit: list[Callable[[], None]] = []

    def __enter__(self) -> Self:
        s = self._session = self._factory()
        self.municipalities = SqlMunicipalities(s)
        self.residents = SqlResidents(s)
        self.cards = SqlCards(s)
        self.certificates = SqlCertificates(s)
        self.issuance = SqlIssuanceRecords(s)
        self.cas = SqlCas(s)
        self.clients = SqlClients(s)
        self.audit = SqlAudit(s)
        self.crls = SqlCrls(s)
        self.ocsp = SqlOcspResponses(s)
        self.proofings = SqlProofings(s)
        self.mobile = SqlMobile(s)
        self.relying_parties = SqlRelyingParties(s)
        self.consents = SqlConsents(s)
        self.jobs = SqlJobRuns(s)
        self.console = SqlConsole(s)
        self.dv_requests = SqlDvRequests(s)
        self.station_tasks = SqlStationTasks(s)
        self.mobile_sweeps = SqlMobileSweeps(s)
        self.pin_reset = SqlPinReset(s)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._session is not None
        # close() rolls back whatever was not committed and detaches the entities *without*
        # expiring them (rollback() would), so results stay readable after the block.
        self._session.close()
        self._session = None
        self._after_commit.clear()

    def commit(self) -> None:
        assert self._session is not None
        callbacks, self._on_commit = self._on_commit, []
        for callback in callbacks:
            callback()
        self._session.commit()
        done, self._after_commit = self._after_commit, []
        for callback in done:
            callback()

    def on_commit(self, callback: Callable[[], None]) -> None:
        self._on_commit.append(callback)

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        assert self._session is not None
        staged = len(self.audit.staged)
        try:
            with self._session.begin_nested():
                yield
        except BaseException:
            del self.audit.staged[staged:]
            raise

    def rollback(self) -> None:
        assert self._session is not None
        self._after_commit.clear()
        self._session.rollback()


class UnitOfWorkFactory:
    """Callable that opens units of work on one engine (the core's ``UnitOfWorkFactory``).

    With ``snapshot``, every unit of work reads one snapshot of the database from its first
    statement to its end, whatever commits meanwhile — for checks that read several tables in
    several statements and compare them (jpki.lifecycle.audit_state). SQLite gives that to any
    transaction
    in WAL mode (on the read-only engine, without blocking writers); PostgreSQL's default READ
    COMMITTED takes a new snapshot per statement, so there it runs in REPEATABLE READ.
    """

    def __init__(self, engine: Engine, *, snapshot: bool = False) -> None:
        map_entities()
        self.engine = engine
        bind = engine
        if snapshot and engine.dialect.name == "postgresql":
            bind = engine.execution_options(isolation_level="REPEATABLE READ")
        self._sessions = sessionmaker(bind, expire_on_commit=False, autoflush=True)

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._sessions)
