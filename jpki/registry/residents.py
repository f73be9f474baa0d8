"""Residents and the events of the resident registry that act on their certificates.

architecture §4 and reference §1.4:

- a change of any of the basic 4 information (name, address, date of birth, sex) revokes the
  signing certificates — card and mobile — with affiliationChanged; the auth ones stay;
- death revokes everything (cessationOfOperation) and ends the record;
- emigration (国外転出, since 2024-05-27): the signing certificate is revoked *on the departure
  date* (a revocation recorded now, effective at 00:00 JST of that date when it lies ahead); the
  record then comes from the 戸籍の附票 with the overseas address, and from the departure date a new
  signing certificate can be issued from it.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum
from typing import Literal, TypeVar

from jpki.access.authz import Grant, Operation
from jpki.access.principals import Principal
from jpki.audit import AuditLog
from jpki.basic4 import Basic4, Sex, normalize_address, normalize_name
from jpki.errors import (
    InvalidDate,
    InvalidInput,
    MunicipalityMerged,
    MunicipalityNotFound,
    ResidentNotFound,
)
from jpki.lifecycle.residents import load_active_resident
from jpki.lifecycle.revocation import RevocationResult, revoke_in
from jpki.model import (
    CertKind,
    RegistrySource,
    Resident,
    ResidentStatus,
    RevocationReason,
)
from jpki.municipalities import Municipality, validate_municipality_code
from jpki.ports import Clock
from jpki.registry.dv_support import DvAsk, file_request
from jpki.registry.ports import ResidentsUnitOfWork, ResidentsUnitOfWorkFactory
from jpki.validity import JST, jst_date

SIGNING_KINDS = (CertKind.CARD_SIGN, CertKind.MOBILE_SIGN)
FIND_LIMIT = 20
KANA_MAX_CHARS = 100
_HIRAGANA = range(0x3041, 0x3097)  # ぁ … ゖ
_KATAKANA = frozenset(chr(c) for c in range(0x30A1, 0x30FB)) | {"ー", "ヽ", "ヾ", "・"}


def is_kana(text: str) -> bool:
    """Whether ``text`` is written in kana (and spaces) only: a reading, not a name."""
    folded = unicodedata.normalize("NFKC", text)
    return any(not ch.isspace() for ch in folded) and all(
        ch.isspace() or ord(ch) in _HIRAGANA or ch in _KATAKANA for ch in folded)


def normalize_kana(raw: str) -> str:
    """A reading as stored: full-width katakana (NFKC, so half-width ｶﾅ too; hiragana
    shifted to katakana), parts separated by one U+3000, as names are (jpki.basic4)."""
    if not is_kana(raw):
        raise InvalidInput("a name's reading is written in kana", field="name_kana")
    folded = unicodedata.normalize("NFKC", raw)
    katakana = "".join(chr(ord(ch) + 0x60) if ord(ch) in _HIRAGANA else ch for ch in folded)
    value = "\u3000".join(katakana.split())
    if len(value) > KANA_MAX_CHARS:
        raise InvalidInput(f"a name's reading has at most {KANA_MAX_CHARS} characters",
                           field="name_kana")
    return value



def require_registering(municipality: Municipality | None, code: str) -> None:
    """A resident can be registered in, or move to, a registered municipality that was not
    merged into another (architecture §5.6). Read under a share lock, so that a merger
    (jpki.registry.municipalities) waits for the registration, or the registration for it."""
    if municipality is None:
        raise MunicipalityNotFound("the municipality is not registered", code=code)
    if not municipality.active:
        raise MunicipalityMerged("the municipality was merged into another", code=code,
                                 merged_into=municipality.merged_into or "")

class EventKind(StrEnum):
    ADDRESS = "address"
    NAME = "name"
    SEX = "sex"
    BIRTH = "birth"
    DEATH = "death"
    EMIGRATION = "emigration"


@dataclass(frozen=True)
class ResidentEvent:
    kind: EventKind
    address: str | None = None
    name: str | None = None
    sex: int | None = None
    birth_date: date | None = None
    date: date | None = None  # death or departure date
    municipality_code: str | None = None  # a move to another municipality changes the shard


@dataclass(frozen=True)
class EventOutcome:
    resident: Resident
    changed: bool
    revocations: list[RevocationResult]


def _check_birth(birth: date, today: date) -> date:
    if birth > today:
        raise InvalidDate("the date of birth lies in the future", field="birth_date")
    if birth.year < 1868:
        raise InvalidDate("the date of birth is before 1868", field="birth_date")
    return birth


class ResidentService:
    def __init__(self, uow_factory: ResidentsUnitOfWorkFactory,
                 clock: Clock, audit: AuditLog) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit

    def register(self, grant: Grant[Literal[Operation.RESIDENT_REGISTER]], *, name: str,
                 birth_date: date, sex: int, address: str, municipality_code: str,
                 dv_support: bool = False, name_kana: str | None = None,
                 dv_request: DvAsk | None = None) -> Resident:
        """Register a resident. ``dv_support`` sets the measures at once (the local operator at
        the CA's own machine); ``dv_request`` asks for them in the same transaction, for a
        supervisor to decide (jpki.registry.dv_support: the two-person rule every remote caller
        is held to)."""
        actor = grant.require(Operation.RESIDENT_REGISTER)
        if dv_request is not None:
            dv_request.grant.require(Operation.DV_REQUEST)
            dv_request.grant.require_municipality(validate_municipality_code(municipality_code))
        kana = normalize_kana(name_kana) if name_kana is not None else None
        code = validate_municipality_code(municipality_code)
        grant.require_municipality(code)
        now = self._clock.now()
        b4 = Basic4(name=normalize_name(name),
                    birth_date=_check_birth(birth_date, jst_date(now)),
                    sex=_sex(sex), address=normalize_address(address))
        with self._uow() as uow:
            require_registering(uow.municipalities.get(code, for_share=True), code)
            resident = Resident(id=uuid.uuid4().hex, municipality_code=code,
                                registry_source=RegistrySource.JUMINHYO,
                                status=ResidentStatus.ACTIVE, dv_support=dv_support,
                                created_at=now, updated_at=now, name=b4.name,
                                birth_date=b4.birth_date, sex=int(b4.sex), address=b4.address,
                                name_kana=kana)
            uow.residents.add(resident)
            self._audit.record(uow, actor=actor.actor, action="resident.registered",
                               subject=resident.id,
                               payload={"municipality": code, "dv_support": dv_support})
            if dv_request is not None:
                file_request(uow, self._audit, actor.actor, resident, turn_on=True,
                             category=dv_request.category, now=now)
            uow.commit()
        return resident

    def find(self, grant: Grant[Literal[Operation.RESIDENT_FIND]], *, name: str,
             birth_date: date) -> list[Resident]:
        """The residents, in the caller's municipalities, born on ``birth_date`` whose name — or,
        when ``name`` is written in kana, whose reading — is ``name``: what a counter asks a
        person, never a list to browse. At most :data:`FIND_LIMIT`. Each search is audited
        with its actor and the number found, never with what was asked."""
        actor = grant.require(Operation.RESIDENT_FIND)
        by_kana = is_kana(name)
        wanted = normalize_kana(name) if by_kana else normalize_name(name)
        scope = sorted(actor.municipalities)
        with self._uow() as uow:
            found = uow.residents.born_on(birth_date, scope or None,
                                          name_kana=wanted if by_kana else None,
                                          name=None if by_kana else wanted,
                                          limit=FIND_LIMIT)
            self._audit.record(uow, actor=actor.actor, action="resident.searched",
                               subject=actor.actor,
                               payload={"by": "kana" if by_kana else "name",
                                        "found": len(found)})
            uow.commit()
        return list(found)

    def get(self, grant: Grant[Literal[Operation.RESIDENT_READ]], resident_id: str) -> Resident:
        grant.require(Operation.RESIDENT_READ)
        with self._uow() as uow:
            resident = uow.residents.get(resident_id)
            if resident is None:
                raise ResidentNotFound("no resident with this id", resident=resident_id[:64])
            grant.require_municipality(resident.municipality_code)
            return resident

    def record_event(self, grant: Grant[Literal[Operation.RESIDENT_EVENT]], resident_id: str,
                     event: ResidentEvent) -> EventOutcome:
        actor = grant.require(Operation.RESIDENT_EVENT)
        now = self._clock.now()
        today = jst_date(now)
        with self._uow() as uow:
            resident = load_active_resident(uow, resident_id, grant)
            old = resident.basic4
            new = self._apply(resident, event, today)
            code = self._municipality(uow, event.municipality_code)
            revocations: list[RevocationResult] = []
            replayed_emigration = (event.kind is EventKind.EMIGRATION
                                   and resident.registry_source is RegistrySource.KOSEKI_FUHYO
                                   and resident.emigrated_on == event.date)
            changed = (new != old or event.kind is EventKind.DEATH
                       or (event.kind is EventKind.EMIGRATION and not replayed_emigration)
                       or (code is not None and code != resident.municipality_code))
            if not changed:
                # Replaying the same change is harmless: nothing to revoke, nothing to record.
                return EventOutcome(resident=resident, changed=False, revocations=[])
            if event.kind is EventKind.DEATH:
                resident.status = ResidentStatus.DECEASED
                revocations = self._revoke(uow, actor, resident, None,
                                           RevocationReason.CESSATION_OF_OPERATION, now, now,
                                           "resident.death")
            elif event.kind is EventKind.EMIGRATION:
                departure = event.date
                assert departure is not None
                effective = max(now, datetime.combine(departure, time(0, 0), JST))
                revocations = self._revoke(uow, actor, resident, SIGNING_KINDS,
                                           RevocationReason.AFFILIATION_CHANGED,
                                           effective, now, "resident.emigration")
                resident.registry_source = RegistrySource.KOSEKI_FUHYO
                resident.emigrated_on = departure
            else:
                revocations = self._revoke(uow, actor, resident, SIGNING_KINDS,
                                           RevocationReason.AFFILIATION_CHANGED, now, now,
                                           f"resident.{event.kind.value}")
            resident.set_basic4(new)
            if code is not None:
                resident.municipality_code = code
            resident.updated_at = now
            resident.version += 1
            # The audit record says what kind of change happened, never the values.
            self._audit.record(uow, actor=actor.actor, action=f"resident.{event.kind.value}",
                               subject=resident.id,
                               payload={"municipality": resident.municipality_code,
                                        "revoked": [r.serial for r in revocations],
                                        "effective": event.date.isoformat()
                                        if event.date else None})
            uow.commit()
        return EventOutcome(resident=resident, changed=True, revocations=revocations)

    @staticmethod
    def _municipality(uow: ResidentsUnitOfWork, raw: str | None) -> str | None:
        if raw is None:
            return None
        code = validate_municipality_code(raw)
        require_registering(uow.municipalities.get(code, for_share=True), code)
        return code

    @staticmethod
    def _apply(resident: Resident, event: ResidentEvent, today: date) -> Basic4:
        b4 = resident.basic4
        match event.kind:
            case EventKind.ADDRESS:
                return Basic4(b4.name, b4.birth_date, b4.sex,
                              normalize_address(_need(event.address, "address")))
            case EventKind.NAME:
                return Basic4(normalize_name(_need(event.name, "name")), b4.birth_date, b4.sex,
                              b4.address)
            case EventKind.SEX:
                return Basic4(b4.name, b4.birth_date, _sex(_need(event.sex, "sex")), b4.address)
            case EventKind.BIRTH:
                birth = _check_birth(_need(event.birth_date, "birth_date"), today)
                return Basic4(b4.name, birth, b4.sex, b4.address)
            case EventKind.DEATH:
                if event.date is not None and event.date > today:
                    raise InvalidDate("the date of death lies in the future", field="date")
                return b4
            case EventKind.EMIGRATION:
                _need(event.date, "date")
                # The 戸籍の附票 record carries the overseas address (§1.3, emigrants).
                return Basic4(b4.name, b4.birth_date, b4.sex,
                              normalize_address(_need(event.address, "address")))
        raise InvalidInput("unknown event kind", field="kind")  # pragma: no cover

    def _revoke(self, uow: ResidentsUnitOfWork, actor: Principal, resident: Resident,
                kinds: tuple[CertKind, ...] | None, reason: RevocationReason,
                revoked_at: datetime, now: datetime, cause: str) -> list[RevocationResult]:
        results: list[RevocationResult] = []
        for cert in uow.certificates.for_resident(resident.id, kinds):
            if cert.not_after < now:
                continue  # expired certificates need no revocation
            # apply_revocation keeps this idempotent: already revoked stays as it is, a hold
            # becomes permanent, a scheduled revocation is never pushed back.
            result = revoke_in(uow, self._audit, actor, cert, reason, revoked_at, now, cause)
            results += [r for r in result.all() if r.serial not in {x.serial for x in results}]
        return results

T = TypeVar("T")


def _need(value: T | None, field: str) -> T:
    if value is None:
        raise InvalidInput(f"this event needs {field}", field=field)
    return value


def _sex(value: int) -> Sex:
    try:
        return Sex(int(value))
    except ValueError as exc:
        raise InvalidInput("sex is 1 (male), 2 (female) or 3 (unknown)", field="sex") from exc
