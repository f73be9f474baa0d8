"""SQLAlchemy implementations of the repository ports. They flush; they never commit."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from jpki.audit import GENESIS_MAC
from jpki.model import (
    ApiClient,
    AuditRecord,
    CaGeneration,
    CaKind,
    Card,
    CardStatus,
    Certificate,
    CertificateStateRow,
    CertKind,
    CertStatus,
    ClientChanges,
    ClientCredentials,
    DeviceStatus,
    MobileChallenge,
    MobileDevice,
    OcspResponder,
    ProofingRecord,
    Resident,
    ResidentStatus,
    RpStanding,
    StatusChange,
    StatusRow,
    StoredOcspResponse,
)
from jpki.municipalities import CrlShard, Municipality, MunicipalityStatus
from jpki.store.issuance import SqlIssuanceRecords
from jpki.store.tables import (
    api_clients,
    audit_head,
    audit_log,
    ca_generations,
    cards,
    certificates,
    crl_shards,
    map_entities,
    mobile_challenges,
    mobile_devices,
    municipalities,
    ocsp_responders,
    ocsp_responses,
    proofings,
    relying_parties,
    residents,
)


def _municipality(row: Any) -> Municipality:
    return Municipality(row.code, row.name_ja, row.name_romaji, name_kana=row.name_kana,
                        shard=row.shard or row.code, status=MunicipalityStatus(row.status),
                        merged_into=row.merged_into)


def _shard(row: Any) -> CrlShard:
    return CrlShard(row.name, row.municipality_code, row.prefecture_romaji, row.city_romaji,
                    closed_at=row.closed_at)


class SqlMunicipalities:
    """The municipality registry (architecture §5.6): municipalities and their CRL shards."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, municipality: Municipality, at: datetime | None = None) -> None:
        """A municipality and its first shard, named by its code (``at``: when it opened;
        None for those seeded with the CA)."""
        self.add_many([municipality], at)

    def add_many(self, added: Sequence[Municipality], at: datetime | None = None) -> None:
        if not added:
            return
        self._s.execute(insert(municipalities), [
            {"code": m.code, "name_ja": m.name_ja, "name_romaji": m.name_romaji,
             "name_kana": m.name_kana, "status": m.status.value, "merged_into": m.merged_into,
             "shard": m.shard} for m in added])
        self._s.execute(insert(crl_shards), [
            {"name": m.shard, "municipality_code": m.code,
             "prefecture_romaji": m.crl_shard.prefecture_romaji,
             "city_romaji": m.crl_shard.city_romaji, "opened_at": at} for m in added])

    def get(self, code: str, *, for_update: bool = False,
            for_share: bool = False) -> Municipality | None:
        """``for_share``: FOR SHARE on PostgreSQL — a registration against a merger."""
        stmt = select(municipalities).where(municipalities.c.code == code)
        if for_update or for_share:
            stmt = stmt.with_for_update(read=not for_update)
        row = self._s.execute(stmt).first()
        return _municipality(row) if row else None

    def all(self) -> Sequence[Municipality]:
        rows = self._s.execute(select(municipalities).order_by(municipalities.c.code))
        return [_municipality(r) for r in rows]

    def codes(self) -> set[str]:
        return set(self._s.execute(select(municipalities.c.code)).scalars())

    def set_kana(self, kana: dict[str, str]) -> int:
        """Fill the reading of the municipalities that have none (and nothing else)."""
        m = municipalities.c
        missing = set(self._s.execute(select(m.code).where(m.name_kana.is_(None))).scalars())
        done = 0
        for code, reading in kana.items():
            if code not in missing:
                continue
            result = self._s.execute(update(municipalities).where(
                m.code == code, m.name_kana.is_(None)).values(name_kana=reading))
            done += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return done

    def update(self, code: str, **values: object) -> None:
        self._s.execute(update(municipalities).where(municipalities.c.code == code)
                        .values(**values))

    def shards(self, code: str) -> list[CrlShard]:
        rows = self._s.execute(select(crl_shards).where(crl_shards.c.municipality_code == code)
                               .order_by(crl_shards.c.name))
        return [_shard(r) for r in rows]

    def shard_named(self, prefecture_romaji: str, city_romaji: str) -> CrlShard | None:
        """The shard whose distribution-point name is this one, if any."""
        row = self._s.execute(select(crl_shards).where(
            crl_shards.c.prefecture_romaji == prefecture_romaji,
            crl_shards.c.city_romaji == city_romaji)).first()
        return _shard(row) if row else None

    def open_shard(self, shard: CrlShard, at: datetime) -> None:
        self._s.execute(insert(crl_shards).values(
            name=shard.name, municipality_code=shard.municipality_code,
            prefecture_romaji=shard.prefecture_romaji, city_romaji=shard.city_romaji,
            opened_at=at, closed_at=None))

    def set_shard_closed(self, name: str, closed_at: datetime | None) -> None:
        self._s.execute(update(crl_shards).where(crl_shards.c.name == name)
                        .values(closed_at=closed_at))

    def move_residents(self, from_code: str, to_code: str, at: datetime) -> int:
        """Every resident of ``from_code`` now lives in ``to_code`` (a merger): one statement."""
        r = residents.c
        result = self._s.execute(update(residents).where(r.municipality_code == from_code)
                                 .values(municipality_code=to_code, updated_at=at,
                                         version=r.version + 1))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def resident_count(self, code: str) -> int:
        """Residents of one municipality (ix_residents_municipality_code)."""
        r = residents.c
        return int(self._s.execute(select(func.count()).where(r.municipality_code == code))
                   .scalar_one())

    def all_shards(self) -> list[CrlShard]:
        return [_shard(r) for r in self._s.execute(select(crl_shards)
                                                   .order_by(crl_shards.c.name))]


class _Prebuilt:
    """Statements on the path of every issuance (and of most registry calls), built once:
    building a statement on each call cost more than running it (bench/issuance.py). Built on
    first use, once the entities are mapped (map_entities)."""

    def __init__(self) -> None:
        map_entities()
        self.resident = select(Resident).where(residents.c.id == bindparam("b_id"))
        self.resident_for_update = self.resident.with_for_update()
        self.active_card = select(Card).where(cards.c.resident_id == bindparam("b_resident"),
                                              cards.c.status == CardStatus.ACTIVE)
        self.card_by_number = select(Card).where(cards.c.number == bindparam("b_number"))
        self.proofing = select(ProofingRecord).where(proofings.c.id == bindparam("b_id"))
        self.proofing_for_update = self.proofing.with_for_update()


@functools.cache
def _prebuilt() -> _Prebuilt:
    return _Prebuilt()


class SqlResidents:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, resident: Resident) -> None:
        self._s.add(resident)
        self._s.flush()

    def get(self, resident_id: str, *, for_update: bool = False) -> Resident | None:
        p = _prebuilt()
        return self._s.execute(p.resident_for_update if for_update else p.resident,
                               {"b_id": resident_id}).scalar_one_or_none()

    def born_on(self, birth_date: date, municipalities: Sequence[str] | None, *,
                name: str | None = None, name_kana: str | None = None,
                limit: int = 20) -> Sequence[Resident]:
        r = residents.c
        stmt = select(Resident).where(r.birth_date == birth_date)
        if municipalities is not None:
            stmt = stmt.where(r.municipality_code.in_(list(municipalities)))
        if name is not None:
            stmt = stmt.where(r.name == name)
        if name_kana is not None:
            stmt = stmt.where(r.name_kana == name_kana)
        return list(self._s.execute(stmt.order_by(r.id).limit(limit)).scalars())


class SqlCards:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, card: Card) -> None:
        self._s.add(card)
        self._s.flush()

    def get(self, card_id: int) -> Card | None:
        return self._s.get(Card, card_id)

    def get_by_number(self, number: str) -> Card | None:
        return self._s.execute(_prebuilt().card_by_number,
                               {"b_number": number}).scalar_one_or_none()

    def latest_for_resident(self, resident_id: str) -> Card | None:
        return self._s.execute(select(Card).where(cards.c.resident_id == resident_id)
                               .order_by(cards.c.id.desc()).limit(1)).scalar_one_or_none()

    def active_for_resident(self, resident_id: str) -> Card | None:
        return self._s.execute(_prebuilt().active_card,
                               {"b_resident": resident_id}).scalars().first()


_C = Certificate
_T = certificates


_STATUS_ROWS = select(_T.c.serial, _T.c.kind, _T.c.status, _T.c.not_after, _T.c.revoked_at,
                      _T.c.revocation_reason, _T.c.ca_generation_id).where(
    _T.c.serial.in_(bindparam("serials", expanding=True)))
_STATUS_CHANGES = select(_T.c.serial, _T.c.kind, _T.c.status, _T.c.not_after, _T.c.revoked_at,
                         _T.c.revocation_reason, _T.c.ca_generation_id,
                         _T.c.revocation_recorded_at)


class SqlCertificates:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, cert: Certificate) -> None:
        self._s.add(cert)
        self._s.flush()

    def get(self, cert_id: int) -> Certificate | None:
        return self._s.get(Certificate, cert_id)

    def get_by_serial(self, serial: str, *, for_update: bool = False) -> Certificate | None:
        stmt = select(_C).where(_T.c.serial == serial)
        if for_update:
            stmt = stmt.with_for_update()
        return self._s.execute(stmt).scalar_one_or_none()

    def serial_exists(self, serial: str) -> bool:
        return bool(self._s.execute(
            select(exists().where(_T.c.serial == serial))).scalar())

    def public_keys_in_use(self, public_key_sha256s: Sequence[str]) -> set[str]:
        return SqlIssuanceRecords(self._s).keys_in_use(public_key_sha256s)

    def public_key_in_use(self, public_key_sha256: str) -> bool:
        stmt = select(exists().where(
            _T.c.public_key_sha256 == public_key_sha256,
            _T.c.status != CertStatus.ABANDONED))
        return bool(self._s.execute(stmt).scalar())

    def for_resident(self, resident_id: str,
                     kinds: Sequence[CertKind] | None = None) -> Sequence[Certificate]:
        stmt = select(_C).where(_T.c.resident_id == resident_id)
        if kinds is not None:
            stmt = stmt.where(_T.c.kind.in_(list(kinds)))
        return list(self._s.execute(stmt.order_by(_T.c.id)).scalars())

    def for_card(self, card_id: int) -> Sequence[Certificate]:
        stmt = select(_C).where(_T.c.card_id == card_id).order_by(_T.c.id)
        return list(self._s.execute(stmt).scalars())

    def successor_of(self, cert_id: int) -> Certificate | None:
        stmt = select(_C).where(_T.c.predecessor_id == cert_id).order_by(
            _T.c.id.desc())
        return self._s.execute(stmt).scalars().first()

    def status_changes_since(self, since: datetime | None) -> Sequence[StatusChange]:
        """The status-change feed (jpki.change_feed): every certificate whose status changed at
        or after ``since`` (all that ever changed when None), without the DER columns."""
        # Every change of status writes revocation_recorded_at, a hold's release included
        # (jpki.lifecycle.revocation: set_revocation, release_hold), so its index alone answers
        # this; an
        # OR with the unindexed hold_released_at scanned the table on every OCSP refresh poll
        # (232 ms at 10^6 rows on SQLite, four times a second: bench/ocsp.py).
        stmt = _STATUS_CHANGES.where(_T.c.revocation_recorded_at.is_not(None)) if since is None \
            else _STATUS_CHANGES.where(_T.c.revocation_recorded_at >= since)
        return [StatusChange(StatusRow(serial=r[0], kind=r[1], status=r[2], not_after=r[3],
                                       revoked_at=r[4], revocation_reason=r[5],
                                       ca_generation_id=r[6]), r[7])
                for r in self._s.connection().execute(stmt)]

    def status_rows(self, serials: Sequence[str]) -> Sequence[StatusRow]:
        """What a status lookup needs of these serials (unknown ones are simply absent), read
        in one statement without the DER columns."""
        if not serials:
            return []
        # One prepared Core statement on the session's connection: no ORM and no statement
        # building on this hot path (it halves the cost of a 100-serial lookup).
        rows = self._s.connection().execute(_STATUS_ROWS, {"serials": list(serials)})
        return [StatusRow(serial=r[0], kind=r[1], status=r[2], not_after=r[3], revoked_at=r[4],
                          revocation_reason=r[5], ca_generation_id=r[6]) for r in rows]

    def issued_successor_of(self, cert_id: int) -> Certificate | None:
        """The newest *issued* certificate that names this one as its predecessor (renewal or
        re-issue): intents still pending or abandoned are not successors."""
        stmt = (select(_C).where(_T.c.predecessor_id == cert_id,
                                 _T.c.status == CertStatus.ISSUED)
                .order_by(_T.c.id.desc()))
        return self._s.execute(stmt).scalars().first()

    def serial_boundary(self, after: str | None, count: int) -> str | None:
        # Walks the unique index on serial: cost grows with ``count``, never with the table.
        stmt = select(_T.c.serial)
        if after is not None:
            stmt = stmt.where(_T.c.serial > after)
        stmt = stmt.order_by(_T.c.serial).offset(count - 1).limit(1)
        found = self._s.execute(stmt).scalar_one_or_none()
        return None if found is None else str(found)

    def state_rows(self, after: str | None, upto: str | None,
                   batch: int = 5_000) -> Iterator[CertificateStateRow]:
        # Keyset pages on the serial index, without the DER columns: memory stays at one page
        # however many certificates the range holds.
        t = _T.c
        last = after
        while True:
            stmt = select(t.serial, t.status, t.not_after, t.revoked_at, t.revocation_reason,
                          t.hold_released_at, t.crl_entry)
            if last is not None:
                stmt = stmt.where(t.serial > last)
            if upto is not None:
                stmt = stmt.where(t.serial <= upto)
            rows = self._s.execute(stmt.order_by(t.serial).limit(batch)).all()
            for r in rows:
                yield CertificateStateRow(
                    serial=r[0], status=r[1], not_after=r[2], revoked_at=r[3],
                    revocation_reason=r[4], hold_released_at=r[5],
                    crl_entry=None if r[6] is None else bytes(r[6]))
            if len(rows) < batch:
                return
            last = rows[-1][0]

    def linked_to(self, cert_id: int) -> Sequence[Certificate]:
        """Mobile certificates linked to a card certificate."""
        return list(self._s.execute(select(_C).where(_T.c.linked_id == cert_id)).scalars())

    def for_device(self, device_id: str) -> Sequence[Certificate]:
        return list(self._s.execute(select(_C).where(_T.c.device_id == device_id)
                                    .order_by(_T.c.id)).scalars())

    def mobile_orphans(self, at: datetime) -> list[str]:
        """The serials of the valid mobile certificates whose linked card certificate is not
        valid at ``at``, or whose resident record has ended (the sweep's candidates: it
        re-checks each under a lock). One statement, serials only: the sweep need not load every
        mobile certificate of the country to find the few the cascade missed."""
        m, card = _T.alias("m"), _T.alias("card")

        def valid(t: Any) -> ColumnElement[bool]:  # Certificate.is_valid, in SQL
            return and_(t.c.status == CertStatus.ISSUED, t.c.not_before <= at,
                        t.c.not_after >= at, or_(t.c.revoked_at.is_(None), t.c.revoked_at > at))

        stmt = (select(m.c.serial)
                .select_from(m.join(residents, residents.c.id == m.c.resident_id)
                             .outerjoin(card, card.c.id == m.c.linked_id))
                .where(m.c.kind.in_([CertKind.MOBILE_SIGN, CertKind.MOBILE_AUTH]), valid(m),
                       or_(residents.c.status != ResidentStatus.ACTIVE, card.c.id.is_(None),
                           not_(valid(card))))
                .order_by(m.c.serial))
        return list(self._s.execute(stmt).scalars())

    def undelivered_before(self, before: datetime) -> Sequence[Certificate]:
        stmt = select(_C).where(_T.c.delivery_required.is_(True), _T.c.delivered_at.is_(None),
                                _T.c.status == CertStatus.ISSUED, _T.c.revoked_at.is_(None),
                                _T.c.created_at < before)
        return list(self._s.execute(stmt).scalars())

    def pending_before(self, before: datetime) -> Sequence[Certificate]:
        stmt = select(_C).where(_T.c.status == CertStatus.PENDING,
                                _T.c.created_at < before)
        return list(self._s.execute(stmt).scalars())


class SqlCas:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add_generation(self, generation: CaGeneration) -> None:
        self._s.add(generation)
        self._s.flush()

    def generations(self, ca: CaKind | None = None) -> Sequence[CaGeneration]:
        stmt = select(CaGeneration).order_by(ca_generations.c.ca,
                                             ca_generations.c.generation)
        if ca is not None:
            stmt = stmt.where(ca_generations.c.ca == ca)
        return list(self._s.execute(stmt).scalars())

    def current(self, ca: CaKind) -> CaGeneration | None:
        stmt = (select(CaGeneration).where(ca_generations.c.ca == ca)
                .order_by(ca_generations.c.generation.desc()))
        return self._s.execute(stmt).scalars().first()

    def get(self, generation_id: int) -> CaGeneration | None:
        return self._s.get(CaGeneration, generation_id)

    def add_responder(self, responder: OcspResponder) -> None:
        self._s.add(responder)
        self._s.flush()

    def responders(self, generation_id: int) -> Sequence[OcspResponder]:
        stmt = select(OcspResponder).where(
            ocsp_responders.c.ca_generation_id == generation_id)
        return list(self._s.execute(stmt.order_by(ocsp_responders.c.id)).scalars())


class SqlOcspResponses:
    def __init__(self, session: Session) -> None:
        self._s = session

    def put(self, generation_id: int, algorithm: str, serial: str, der: bytes,
            this_update: datetime, next_update: datetime) -> None:
        self.put_many([(generation_id, algorithm, serial, der, this_update, next_update)])

    def put_many(self, rows: Sequence[tuple[int, str, str, bytes, datetime, datetime]]) -> None:
        """Upsert signed responses, in one statement (executemany) for the lot. A stored
        response is never replaced by one produced earlier: a signer that read a status just
        before a change committed must not undo the re-signing that followed the change."""
        if not rows:
            return
        dialect = self._s.get_bind().dialect.name
        upsert = sqlite_insert if dialect == "sqlite" else pg_insert
        stmt = upsert(ocsp_responses)
        self._s.execute(stmt.on_conflict_do_update(
            index_elements=["ca_generation_id", "hash_algorithm", "serial"],
            set_={"der": stmt.excluded.der, "this_update": stmt.excluded.this_update,
                  "next_update": stmt.excluded.next_update},
            where=ocsp_responses.c.this_update <= stmt.excluded.this_update),
            [{"ca_generation_id": g, "hash_algorithm": a, "serial": s, "der": d,
              "this_update": t, "next_update": n} for g, a, s, d, t, n in rows])

    def get(self, generation_id: int, algorithm: str,
            serial: str) -> tuple[bytes, datetime, datetime] | None:
        o = ocsp_responses.c
        row = self._s.execute(select(o.der, o.this_update, o.next_update).where(
            o.ca_generation_id == generation_id, o.hash_algorithm == algorithm,
            o.serial == serial)).first()
        return (bytes(row.der), row.this_update, row.next_update) if row else None

    def missing(self, algorithm: str, fresh_from: datetime, now: datetime,
                limit: int, after: int = 0) -> list[tuple[int, int, str]]:
        """(certificate id, generation id, serial) of unexpired certificates without a response
        signed since ``fresh_from`` for ``algorithm``, in id order from the one after id
        ``after``: a caller that pages with the last id it got reads the table once, where
        restarting from the first row each page read it once a page (docs/scale.md).

        The certificates are walked in id order and each one's response looked up by its key
        (a scalar subquery: an index probe per certificate), so a page costs the rows walked to
        fill it. As NOT EXISTS, PostgreSQL hashed every stored response for every page — a
        whole-table join per 500 certificates: 1.4 s a page at 10^6, 3 to 13 s at 10^7."""
        c = _T.c
        stmt = (select(c.id, c.ca_generation_id, c.serial)
                .where(c.id > after, c.status != CertStatus.PENDING, c.not_after >= now,
                       _fresh_response(_T, algorithm, fresh_from).is_(None))
                .order_by(c.id).limit(limit))
        return [(int(r[0]), int(r[1]), str(r[2])) for r in self._s.execute(stmt)]

    def count_missing(self, algorithm: str, fresh_from: datetime, now: datetime,
                      limit: int, sample_rows: int | None = None) -> int:
        """How many :meth:`missing` would list, counted up to ``limit``.

        With ``sample_rows``, on PostgreSQL and a table of more than ten times that many rows
        (by the planner's estimate), an estimate: the count in a random sample of about
        ``sample_rows`` rows' worth of pages (TABLESAMPLE SYSTEM), scaled up. The exact count
        reads every certificate and grows with the store (docs/scale.md), and a metrics scrape
        asks every half minute."""
        fraction = self._sample_fraction(sample_rows)
        if fraction is None:
            inner = select(_T.c.id).where(*_missing(algorithm, fresh_from, now)).limit(limit)
            return int(self._s.execute(select(func.count()).select_from(inner.subquery()))
                       .scalar() or 0)
        sampled = _T.tablesample(func.system(fraction * 100), name="sampled")
        c = sampled.c
        # A scalar subquery per sampled row (an index probe each): as NOT EXISTS the planner
        # hashes every stored response, the whole-table read the sample is there to avoid.
        stmt = select(func.count()).select_from(sampled).where(
            c.status != CertStatus.PENDING, c.not_after >= now,
            _fresh_response(sampled, algorithm, fresh_from).is_(None))
        counted = int(self._s.execute(stmt).scalar() or 0)
        return min(limit, round(counted / fraction))

    def _sample_fraction(self, sample_rows: int | None) -> float | None:
        if sample_rows is None or self._s.get_bind().dialect.name != "postgresql":
            return None
        estimate = self._s.execute(text(
            "SELECT reltuples FROM pg_class WHERE oid = 'certificates'::regclass")).scalar()
        if estimate is None or float(estimate) <= 10 * sample_rows:
            return None
        return sample_rows / float(estimate)

    def entries_for(self, serials: Sequence[str]) -> list[StoredOcspResponse]:
        """Every stored response for these serials (any generation and hash algorithm)."""
        out: list[StoredOcspResponse] = []
        for i in range(0, len(serials), 500):
            rows = self._s.execute(_STORED.where(
                ocsp_responses.c.serial.in_(serials[i:i + 500])))
            out += [_stored(r) for r in rows]
        return out

    def oldest_servable(self, now: datetime) -> datetime | None:
        """The production time of the oldest stored response that has not expired at ``now``:
        nothing older can be served (jpki.change_feed)."""
        o = ocsp_responses.c
        value: datetime | None = self._s.execute(
            select(func.min(o.this_update)).where(o.next_update > now)).scalar()
        return value

    def delete(self, keys: Sequence[tuple[int, str, str]]) -> None:
        """Delete these stored responses ((generation id, hash algorithm, serial) each)."""
        if not keys:
            return
        o = ocsp_responses.c
        self._s.execute(ocsp_responses.delete().where(
            o.ca_generation_id == bindparam("g"), o.hash_algorithm == bindparam("a"),
            o.serial == bindparam("s")), [{"g": g, "a": a, "s": s} for g, a, s in keys])

    def stored_after(self, after: tuple[int, str, str] | None,
                     limit: int) -> list[StoredOcspResponse]:
        """Stored responses in key order, from the one after ``after`` (keyset pagination: a
        scan of millions of rows in bounded memory, each page one index range read)."""
        o = ocsp_responses.c
        stmt = _STORED
        if after is not None:
            stmt = stmt.where(tuple_(o.ca_generation_id, o.hash_algorithm, o.serial)
                              > tuple_(*after))
        stmt = stmt.order_by(o.ca_generation_id, o.hash_algorithm, o.serial).limit(limit)
        return [_stored(r) for r in self._s.execute(stmt)]


def _fresh_response(certs: Any, algorithm: str, fresh_from: datetime) -> Any:
    """1 when the certificate row of ``certs`` has a response for ``algorithm`` signed since
    ``fresh_from``, else NULL: a scalar subquery, which both engines run as one lookup by the
    response's key per certificate."""
    o = ocsp_responses.c
    return (select(literal(1)).where(o.ca_generation_id == certs.c.ca_generation_id,
                                     o.serial == certs.c.serial, o.hash_algorithm == algorithm,
                                     o.this_update >= fresh_from)
            .limit(1).scalar_subquery())


def _missing(algorithm: str, fresh_from: datetime, now: datetime) -> list[Any]:
    o = ocsp_responses.c
    fresh = select(o.serial).where(o.ca_generation_id == _T.c.ca_generation_id,
                                   o.serial == _T.c.serial, o.hash_algorithm == algorithm,
                                   o.this_update >= fresh_from)
    return [_T.c.status != CertStatus.PENDING, _T.c.not_after >= now, ~fresh.exists()]


_STORED = select(ocsp_responses.c.ca_generation_id, ocsp_responses.c.hash_algorithm,
                 ocsp_responses.c.serial, ocsp_responses.c.der, ocsp_responses.c.this_update,
                 ocsp_responses.c.next_update)


def _stored(r: Sequence[Any]) -> StoredOcspResponse:
    return StoredOcspResponse(int(r[0]), str(r[1]), str(r[2]), bytes(r[3]), r[4], r[5])


class SqlProofings:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, record: ProofingRecord) -> None:
        self._s.add(record)
        self._s.flush()

    def get(self, proofing_id: str, *, for_update: bool = False) -> ProofingRecord | None:
        p = _prebuilt()
        return self._s.execute(p.proofing_for_update if for_update else p.proofing,
                               {"b_id": proofing_id}).scalar_one_or_none()


class SqlMobile:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add_device(self, device: MobileDevice) -> None:
        self._s.add(device)
        self._s.flush()

    def device(self, device_id: str, *, for_update: bool = False) -> MobileDevice | None:
        return self._s.get(MobileDevice, device_id, with_for_update=for_update or None)

    def active_devices(self, resident_id: str) -> Sequence[MobileDevice]:
        d = mobile_devices.c
        stmt = select(MobileDevice).where(d.resident_id == resident_id,
                                          d.status == DeviceStatus.ACTIVE)
        return list(self._s.execute(stmt).scalars())

    def devices_not_seen_since(self, before: datetime) -> Sequence[MobileDevice]:
        d = mobile_devices.c
        stmt = select(MobileDevice).where(d.status == DeviceStatus.ACTIVE,
                                          d.last_seen_at < before)
        return list(self._s.execute(stmt).scalars())

    def silent_device_ids(self, before: datetime, *, unflagged: bool = False) -> list[str]:
        d = mobile_devices.c
        stmt = select(d.id).where(d.status == DeviceStatus.ACTIVE, d.last_seen_at < before)
        if unflagged:
            stmt = stmt.where(d.flagged_at.is_(None))
        return list(self._s.execute(stmt.order_by(d.id)).scalars())

    def add_challenge(self, challenge: MobileChallenge) -> None:
        self._s.add(challenge)
        self._s.flush()

    def challenge(self, digest: str, *, for_update: bool = False) -> MobileChallenge | None:
        stmt = select(MobileChallenge).where(mobile_challenges.c.digest == digest)
        if for_update:
            stmt = stmt.with_for_update()
        return self._s.execute(stmt).scalar_one_or_none()

    def outstanding_challenges(self, now: datetime, source: str | None = None,
                               ) -> tuple[int, datetime | None]:
        """(how many, the earliest expiry) of the challenges neither used nor expired — of one
        source, or of all (an index range either way: ix_mobile_challenges_source_expires_at,
        ix_mobile_challenges_expires_at)."""
        c = mobile_challenges.c
        stmt = select(func.count(), func.min(c.expires_at)).where(
            c.expires_at > now, c.used_at.is_(None))
        if source is not None:
            stmt = stmt.where(c.source == source)
        count, earliest = self._s.execute(stmt).one()
        return int(count), earliest

    def delete_spent_challenges(self, now: datetime) -> int:
        """Delete the expired challenges and the used ones; how many went."""
        c = mobile_challenges.c
        deleted = 0
        for condition in (c.expires_at <= now, c.used_at.is_not(None)):
            result = self._s.execute(mobile_challenges.delete().where(condition))
            deleted += int(getattr(result, "rowcount", 0) or 0)
        return deleted


_PARENT = relying_parties.alias("parent")
_CREDENTIALS = (
    select(api_clients.c.client_id, api_clients.c.role, api_clients.c.scopes,
           api_clients.c.status, api_clients.c.secret_hash, api_clients.c.previous_secret_hash,
           api_clients.c.previous_secret_expires_at, api_clients.c.relying_party_id,
           api_clients.c.station_kind, relying_parties.c.id.label("rp_id"),
           relying_parties.c.status.label("rp_status"),
           relying_parties.c.purposes.label("rp_purposes"),
           relying_parties.c.parent_id.label("rp_parent"),
           _PARENT.c.status.label("parent_status"))
    .select_from(api_clients
                 .outerjoin(relying_parties,
                            relying_parties.c.id == api_clients.c.relying_party_id)
                 .outerjoin(_PARENT, _PARENT.c.id == relying_parties.c.parent_id))
    .where(api_clients.c.client_id == bindparam("client_id")))


# The change feed of the kept credentials (jpki.access.kept_clients): one statement, two index
# ranges.
_CLIENT_CHANGES = union_all(
    select(api_clients.c.client_id.label("id"), literal(False).label("party"))
    .where(api_clients.c.changed_at >= bindparam("since")),
    select(relying_parties.c.id.label("id"), literal(True).label("party"))
    .where(relying_parties.c.updated_at >= bindparam("since")))


class SqlClients:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, client: ApiClient) -> None:
        self._s.add(client)
        self._s.flush()

    def get_by_client_id(self, client_id: str) -> ApiClient | None:
        stmt = select(ApiClient).where(api_clients.c.client_id == client_id)
        return self._s.execute(stmt).scalar_one_or_none()

    def all(self) -> Sequence[ApiClient]:
        return list(self._s.execute(select(ApiClient).order_by(api_clients.c.id)).scalars())

    def credentials(self, client_id: str) -> ClientCredentials | None:
        # Core, one statement: every authenticated call makes it (bench/relying_party.py).
        row = self._s.execute(_CREDENTIALS, {"client_id": client_id}).one_or_none()
        if row is None:
            return None
        standing = None
        if row.rp_id is not None:
            standing = RpStanding(relying_party=row.rp_id, status=row.rp_status,
                                  parent_status=row.parent_status,
                                  purposes=tuple(json.loads(row.rp_purposes)),
                                  parent=row.rp_parent)
        return ClientCredentials(
            client_id=row.client_id, role=row.role, scopes=row.scopes, status=row.status,
            secret_hash=row.secret_hash, previous_secret_hash=row.previous_secret_hash,
            previous_secret_expires_at=row.previous_secret_expires_at,
            relying_party_id=row.relying_party_id, standing=standing,
            station_kind=row.station_kind)

    def changes_since(self, since: datetime) -> ClientChanges:
        clients: set[str] = set()
        parties: set[str] = set()
        for row in self._s.execute(_CLIENT_CHANGES, {"since": since}):
            (parties if row.party else clients).add(row.id)
        return ClientChanges(clients=frozenset(clients), relying_parties=frozenset(parties))

    def replace_secret_hash(self, client_id: str, old: str, new: str,
                            at: datetime) -> str | None:
        # Compare-and-set in one UPDATE each: a rotation committed since ``old`` was read wins.
        for column, which in ((api_clients.c.secret_hash, "current"),
                              (api_clients.c.previous_secret_hash, "previous")):
            result = self._s.execute(update(api_clients)
                                     .where(api_clients.c.client_id == client_id, column == old)
                                     .values({column.key: new, "changed_at": at}))
            if getattr(result, "rowcount", 0):
                return which
        return None


_APPEND = insert(audit_log)
_HEAD = select(audit_head.c.seq, audit_head.c.mac).where(audit_head.c.id == 1)
_HEAD_FOR_UPDATE = _HEAD.with_for_update()
_SET_HEAD = update(audit_head).where(audit_head.c.id == 1).values(
    seq=bindparam("h_seq"), mac=bindparam("h_mac"))


class SqlAudit:
    def __init__(self, session: Session) -> None:
        self._s = session
        self.staged: list[tuple[datetime, str, str, str, str, str | None]] = []

    def head(self, *, for_update: bool = False) -> tuple[int, str]:
        # Pending changes are flushed first: the head is locked after every other row the
        # transaction writes (the lock order the appenders rely on). Then a prebuilt Core
        # statement on the session's connection: every audited call's commit makes it.
        self._s.flush()
        row = self._s.connection().execute(_HEAD_FOR_UPDATE if for_update else _HEAD).first()
        if row is None:
            # The migration creates the row; an empty table means a fresh schema.
            self._s.execute(insert(audit_head).values(id=1, seq=0, mac=GENESIS_MAC))
            return 0, GENESIS_MAC
        return int(row.seq), str(row.mac)

    # The appends that follow the head are Core statements on the session's connection (not
    # through the ORM): appending to the chain is on the path of every audited call.
    def append_many(self, records: Sequence[AuditRecord]) -> None:
        self._s.connection().execute(_APPEND, [
            {"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action,
             "subject": r.subject, "payload": r.payload, "prev_mac": r.prev_mac, "mac": r.mac,
             "request_id": r.request_id}
            for r in records])

    def set_head(self, seq: int, mac: str) -> None:
        self._s.connection().execute(_SET_HEAD, {"h_seq": seq, "h_mac": mac})

    def iterate(self, batch: int = 1000) -> Iterator[AuditRecord]:
        last = 0
        while True:
            rows = self._s.execute(select(audit_log).where(audit_log.c.seq > last)
                                   .order_by(audit_log.c.seq).limit(batch)).all()
            if not rows:
                return
            for r in rows:
                yield AuditRecord(seq=int(r.seq), at=r.at, actor=r.actor, action=r.action,
                                  subject=r.subject, payload=r.payload, prev_mac=r.prev_mac,
                                  mac=r.mac, request_id=r.request_id)
            last = int(rows[-1].seq)

    def count(self) -> int:
        return int(self._s.execute(select(func.count()).select_from(audit_log)).scalar_one())

    def about_subjects(self, actions: Sequence[str], after: str | None, upto: str | None,
                       batch: int = 5_000) -> Iterator[AuditRecord]:
        # The subject range is compared in SQL, as state_rows compares serials, so both use the
        # database's collation and the ranges of the two tables are the same sets of strings.
        a = audit_log.c
        last = 0
        while True:
            stmt = select(audit_log).where(a.seq > last, a.action.in_(list(actions)))
            if after is not None:
                stmt = stmt.where(a.subject > after)
            if upto is not None:
                stmt = stmt.where(a.subject <= upto)
            rows = self._s.execute(stmt.order_by(a.seq).limit(batch)).all()
            for r in rows:
                yield AuditRecord(seq=int(r.seq), at=r.at, actor=r.actor, action=r.action,
                                  subject=r.subject, payload=r.payload, prev_mac=r.prev_mac,
                                  mac=r.mac)
            if len(rows) < batch:
                return
            last = int(rows[-1].seq)
