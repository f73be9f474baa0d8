"""The SQLAlchemy unit of work: one session, one transaction, repositories bound to it."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from jpki.store.crls import SqlCrls
from jpki.store.repositories import (
    SqlAudit,
    SqlCards,
    SqlCas,
    SqlCertificates,
    SqlClients,
    SqlMunicipalities,
    SqlOcspResponses,
    SqlResidents,
)
from jpki.store.tables import map_entities


class SqlUnitOfWork:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._session: Session | None = None

    def __enter__(self) -> Self:
        s = self._session = self._factory()
        self.municipalities = SqlMunicipalities(s)
        self.residents = SqlResidents(s)
        self.cards = SqlCards(s)
        self.certificates = SqlCertificates(s)
        self.cas = SqlCas(s)
        self.clients = SqlClients(s)
        self.audit = SqlAudit(s)
        self.crls = SqlCrls(s)
        self.ocsp = SqlOcspResponses(s)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._session is not None
        # close() rolls back whatever was not committed and detaches the entities *without*
        # expiring them (rollback() would), so results stay readable after the block.
        self._session.close()
        self._session = None

    def commit(self) -> None:
        assert self._session is not None
        self._session.commit()

    def rollback(self) -> None:
        assert self._session is not None
        self._session.rollback()


class UnitOfWorkFactory:
    """Callable that opens units of work on one engine (the core's ``UnitOfWorkFactory``)."""

    def __init__(self, engine: Engine) -> None:
        map_entities()
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False, autoflush=True)

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._sessions)
