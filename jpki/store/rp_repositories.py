"""SQLAlchemy repositories of the relying-party services: relying parties and consents.

They flush; they never commit (architecture §2).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, bindparam, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jpki.errors import DuplicateResource
from jpki.model import (
    ApiClient,
    CertificateLine,
    CertStatus,
    Consent,
    RelyingParty,
    StandingConsent,
)
from jpki.store.tables import api_clients, certificates, consents, relying_parties, residents


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


_SIGNER = certificates.alias("signer")
_NEXT = certificates.alias("successor")
_STANDING_COLUMNS = (
    consents.c.id, consents.c.relying_party_id, consents.c["items"], consents.c.purpose,
    consents.c.expires_at, consents.c.withdrawn_at, consents.c.resident_id,
    residents.c.status.label("resident_status"), residents.c.dv_support, residents.c.name,
    residents.c.birth_date, residents.c.sex, residents.c.address,
    _SIGNER.c.id.label("s_id"), _SIGNER.c.serial.label("s_serial"),
    _SIGNER.c.kind.label("s_kind"), _SIGNER.c.status.label("s_status"),
    _SIGNER.c.not_before.label("s_not_before"), _SIGNER.c.not_after.label("s_not_after"),
    _SIGNER.c.revoked_at.label("s_revoked_at"), _SIGNER.c.linked_id.label("s_linked_id"),
    exists().where(_NEXT.c.predecessor_id == _SIGNER.c.id,
                   _NEXT.c.status == CertStatus.ISSUED).label("has_successor"))


@cache
def _standing(for_update: bool) -> Select[Any]:
    """One statement, built once: a standing consent is read on every basic 4 call."""
    stmt = (select(*_STANDING_COLUMNS)
            .select_from(consents.join(residents, residents.c.id == consents.c.resident_id)
                         .join(_SIGNER, _SIGNER.c.id == consents.c.signer_id))
            .where(consents.c.id == bindparam("consent_id")))
    # The consent row alone is locked (PostgreSQL; SQLite's writer holds the database).
    return stmt.with_for_update(of=consents) if for_update else stmt


def read_standing(conn: Connection, consent_id: str, *,
                  for_update: bool = False) -> StandingConsent | None:
    """:meth:`SqlConsents.standing` on a connection. Core, one statement: the consent, the
    resident and the signer where the ORM made four (bench/relying_party.py, basic4)."""
    row = conn.execute(_standing(for_update), {"consent_id": consent_id}).one_or_none()
    return None if row is None else standing_from(row)


def standing_statement(for_update: bool) -> Select[Any]:
    """The statement of :func:`read_standing`, for a reader that runs it on the driver
    (jpki.store.audit_writer); its one parameter is ``consent_id``."""
    return _standing(for_update)


def standing_from(row: Any) -> StandingConsent:
    """A row of :func:`standing_statement` (its columns as attributes) as the model's."""
    signer = CertificateLine(id=row.s_id, serial=row.s_serial, kind=row.s_kind,
                             status=row.s_status, not_before=row.s_not_before,
                             not_after=row.s_not_after, revoked_at=row.s_revoked_at,
                             linked_id=row.s_linked_id)
    return StandingConsent(
        id=row.id, relying_party_id=row.relying_party_id, items=row.items,
        purpose=row.purpose, expires_at=row.expires_at, withdrawn_at=row.withdrawn_at,
        resident_id=row.resident_id, resident_status=row.resident_status,
        dv_support=bool(row.dv_support), signer=signer,
        has_successor=bool(row.has_successor), name=row.name, birth_date=row.birth_date,
        sex=row.sex, address=row.address)

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

    def standing(self, consent_id: str, *, for_update: bool = False) -> StandingConsent | None:
        return read_standing(self._s.connection(), consent_id, for_update=for_update)
