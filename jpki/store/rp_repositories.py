"""SQLAlchemy repositories of the relying-party services: relying parties and consents.

They flush; they never commit (architecture §2).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from sqlalchemy import Select, bindparam, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jpki.errors import DuplicateResource
from jpki.model import ApiClient, Consent, RelyingParty
from jpki.store.tables import api_clients, consents, relying_parties


class SqlRelyingParties:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, rp: RelyingParty) -> None:
        self._s.add(rp)
        self._s.flush()

    def get(self, rp_id: str) -> RelyingParty | None:
        return self._s.get(RelyingParty, rp_id)

    def all(self) -> Sequence[RelyingParty]:
        stmt = select(RelyingParty).order_by(relying_parties.c.created_at, relying_parties.c.id)
        return list(self._s.execute(stmt).scalars())

    def clients_of(self, rp_id: str) -> Sequence[ApiClient]:
        stmt = (select(ApiClient).where(api_clients.c.relying_party_id == rp_id)
                .order_by(api_clients.c.id))
        return list(self._s.execute(stmt).scalars())


@cache
def _consent_by_id(for_update: bool) -> Select[Consent]:
    """Built once (after the mapping, jpki.store.tables.map_entities): a standing consent is
    read on every basic 4 call, and building the statement cost a third of the read (measured
    on SQLite)."""
    stmt = select(Consent).where(consents.c.id == bindparam("consent_id"))
    return stmt.with_for_update() if for_update else stmt


class SqlConsents:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, consent: Consent) -> None:
        try:
            # A savepoint, so that a lost race on the unique nonce leaves the transaction usable
            # (PostgreSQL aborts the whole transaction on an error otherwise).
            with self._s.begin_nested():
                self._s.add(consent)
                self._s.flush()
        except IntegrityError as exc:
            self._s.expunge(consent)
            raise DuplicateResource("this consent was submitted before") from exc

    def get(self, consent_id: str, *, for_update: bool = False) -> Consent | None:
        return self._s.execute(_consent_by_id(for_update),
                               {"consent_id": consent_id}).scalar_one_or_none()

    def nonce_used(self, nonce_digest: str) -> bool:
        return bool(self._s.execute(
            select(exists().where(consents.c.nonce_digest == nonce_digest))).scalar())
