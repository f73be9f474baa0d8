"""The municipality registry over time (architecture §5.6): add a municipality, rename one,
merge one into another (市町村合併). National operators only (the table of jpki.access.authz);
every change is audited with codes, names of municipalities and counts — never a resident.

What a certificate already issued names never changes: its CRL distribution point is its
shard's, and a shard's distribution-point name is frozen when the shard opens
(jpki.municipalities.CrlShard). So:

- **rename**: a new Japanese name or reading changes nothing a certificate carries; a new
  romaji opens a new shard (``<code>-2``…) with it, and new certificates are issued under that
  one; the old shard is closed and stays published while a certificate issued under it has not
  expired (jpki.revocation.crls). Renaming back to a romaji the municipality had reopens that
  shard (the same distribution-point name is the same CRL scope).
- **merge A into B**: A's residents become B's (new certificates are issued under B's shard,
  and B's operators keep their records); A is marked merged and can register no one; A's shard
  is closed and stays published like a renamed one's.

No two shards share a distribution-point name — a CRL of one would answer for the other's
certificates (RFC 5280 §6.3.3 (b)(2)) — so a romaji another municipality's shard has is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from jpki.access.authz import Grant, Operation
from jpki.audit import AuditLog
from jpki.errors import (
    CrlNameTaken,
    InvalidInput,
    MunicipalityExists,
    MunicipalityMerged,
    MunicipalityNotFound,
)
from jpki.municipalities import (
    CrlShard,
    Municipality,
    MunicipalityStatus,
    check_romaji,
    municipality_romaji,
    shard_name,
    validate_municipality_code,
)
from jpki.ports import Clock
from jpki.registry.ports import MunicipalitiesUnitOfWork, MunicipalitiesUnitOfWorkFactory

# 市区町村 names: no ASCII (the romaji is its own field), no space but one between a designated
# city and its ward (札幌市 中央区, as japancode writes them), each part ending in its kind.
NAME_JA_PATTERN = r"^[^\x00-\x7f\s]{0,39}[市区町村](?: [^\x00-\x7f\s]{0,39}[市区町村])?$"
# Hiragana, a ward's reading after one space (さっぽろし ちゅうおうく).
KANA_PATTERN = r"^[ぁ-ん]{1,60}(?: [ぁ-ん]{1,60})?$"
_NAME_JA = re.compile(NAME_JA_PATTERN)
_KANA = re.compile(KANA_PATTERN)


@dataclass(frozen=True)
class MunicipalityView:
    """A municipality with its CRL shards (its current one, and those closed)."""

    municipality: Municipality
    shards: tuple[CrlShard, ...]
    residents: int | None  # counted for one municipality, not for the list of all


@dataclass(frozen=True)
class Renamed:
    view: MunicipalityView
    previous_shard: str
    shard: str  # the same when only the Japanese name or the reading changed


@dataclass(frozen=True)
class Merged:
    merged: MunicipalityView
    into: MunicipalityView
    residents_moved: int
    closed_shard: str


def _name_ja(value: str) -> tuple[str, str]:
    """(the name as given, the name stored: without the ward's space)."""
    if not isinstance(value, str) or not _NAME_JA.fullmatch(value):
        raise InvalidInput("name_ja: a municipality's name in Japanese, ending in 市, 区, 町 or "
                           "村 (a ward of a designated city after one space)", field="name_ja",
                           rule="name_ja")
    return value, value.replace(" ", "")


def _kana(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _KANA.fullmatch(value):
        raise InvalidInput("name_kana: hiragana (a ward's reading after one space)",
                           field="name_kana", rule="kana")
    return value


def _romaji(name_ja: str, kana: str | None, romaji: str | None) -> str:
    if romaji is not None:
        return check_romaji(romaji)
    if kana is None:
        raise InvalidInput("name_romaji, or name_kana to derive it from, is required",
                           field="name_romaji", rule="required")
    # jpki.municipalities' documented rule, as for the seeded ones.
    return municipality_romaji(name_ja, kana)


class MunicipalityRegistry:
    def __init__(self, uow_factory: MunicipalitiesUnitOfWorkFactory,
                 clock: Clock, audit: AuditLog) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit

    # --- reading ------------------------------------------------------------------------------

    def list(self, grant: Grant[Literal[Operation.MUNICIPALITY_READ]]) -> list[MunicipalityView]:
        grant.require(Operation.MUNICIPALITY_READ)
        with self._uow() as uow:
            shards: dict[str, list[CrlShard]] = {}
            for shard in uow.municipalities.all_shards():
                shards.setdefault(shard.municipality_code, []).append(shard)
            return [MunicipalityView(m, tuple(shards.get(m.code, ())), None)
                    for m in uow.municipalities.all()]

    def get(self, grant: Grant[Literal[Operation.MUNICIPALITY_READ]],
            code: str) -> MunicipalityView:
        grant.require(Operation.MUNICIPALITY_READ)
        code = validate_municipality_code(code)
        with self._uow() as uow:
            return self._view(uow, code)

    # --- changes ------------------------------------------------------------------------------

    def add(self, grant: Grant[Literal[Operation.MUNICIPALITY_ADD]], code: str, name_ja: str, *,
            name_kana: str | None = None, name_romaji: str | None = None) -> MunicipalityView:
        """Register a municipality (a new one, or one japancode's list lacks), with its first
        shard named by its code. The code's check digit is verified."""
        actor = grant.require(Operation.MUNICIPALITY_ADD)
        code = validate_municipality_code(code)
        given, stored = _name_ja(name_ja)
        kana = _kana(name_kana)
        romaji = _romaji(given, kana, name_romaji)
        m = Municipality(code, stored, romaji, name_kana=kana.replace(" ", "") if kana else None)
        now = self._clock.now()
        with self._uow() as uow:
            if uow.municipalities.get(code) is not None:
                raise MunicipalityExists("a municipality with this code is registered", code=code)
            self._check_name_free(uow, m.crl_shard)
            uow.municipalities.add(m, now)
            self._audit.record(uow, actor=actor.actor, action="municipality.added", subject=code,
                               payload={"name_ja": m.name_ja, "name_romaji": m.name_romaji,
                                        "shard": m.shard})
            uow.commit()
        return MunicipalityView(m, (m.crl_shard,), 0)

    def rename(self, grant: Grant[Literal[Operation.MUNICIPALITY_RENAME]], code: str, *,
               name_ja: str | None = None, name_kana: str | None = None,
               name_romaji: str | None = None) -> Renamed:
        """A new name for future certificates. Only a new romaji changes what they carry: it
        opens a new shard (module docstring); certificates already issued keep theirs."""
        actor = grant.require(Operation.MUNICIPALITY_RENAME)
        code = validate_municipality_code(code)
        if name_ja is None and name_kana is None and name_romaji is None:
            raise InvalidInput("name a new name_ja, name_kana or name_romaji", field="name_ja",
                               rule="required")
        stored_ja = _name_ja(name_ja)[1] if name_ja is not None else None
        kana = _kana(name_kana)
        romaji = check_romaji(name_romaji) if name_romaji is not None else None
        now = self._clock.now()
        with self._uow() as uow:
            m = self._load(uow, code, for_update=True)
            self._require_active(m)
            values: dict[str, object] = {}
            if stored_ja is not None and stored_ja != m.name_ja:
                values["name_ja"] = stored_ja
            if kana is not None and kana.replace(" ", "") != m.name_kana:
                values["name_kana"] = kana.replace(" ", "")
            shard = m.shard
            if romaji is not None and romaji != m.name_romaji:
                shard = self._shard_for(uow, m, romaji, now)
                values.update(name_romaji=romaji, shard=shard)
            if not values:
                raise InvalidInput("the municipality has this name already", field="name_ja",
                                   rule="unchanged")
            uow.municipalities.update(code, **values)
            renamed = self._view(uow, code)
            self._audit.record(uow, actor=actor.actor, action="municipality.renamed",
                               subject=code,
                               payload={"changed": sorted(values),
                                        "name_ja": renamed.municipality.name_ja,
                                        "name_romaji": renamed.municipality.name_romaji,
                                        "previous_shard": m.shard, "shard": shard})
            uow.commit()
        return Renamed(renamed, m.shard, shard)

    def merge(self, grant: Grant[Literal[Operation.MUNICIPALITY_MERGE]], code: str,
              into: str) -> Merged:
        """Merge ``code`` into ``into`` (編入, or each of a 新設合併's municipalities into the
        new one, added first): its residents move, its shard is closed."""
        actor = grant.require(Operation.MUNICIPALITY_MERGE)
        code = validate_municipality_code(code)
        into = validate_municipality_code(into)
        if code == into:
            raise InvalidInput("a municipality cannot be merged into itself", field="into",
                               rule="distinct")
        now = self._clock.now()
        with self._uow() as uow:
            # Both rows locked, in code order (two mergers never wait on each other in a
            # cycle); a registration in the merged one waits, then sees it merged.
            first, second = sorted((code, into))
            loaded = {c: self._load(uow, c, for_update=True) for c in (first, second)}
            merged, target = loaded[code], loaded[into]
            self._require_active(merged)
            self._require_active(target)
            moved = uow.municipalities.move_residents(code, into, now)
            uow.municipalities.update(code, status=MunicipalityStatus.MERGED.value,
                                      merged_into=into)
            uow.municipalities.set_shard_closed(merged.shard, now)
            self._audit.record(uow, actor=actor.actor, action="municipality.merged",
                               subject=code,
                               payload={"into": into, "residents_moved": moved,
                                        "closed_shard": merged.shard})
            after = Merged(self._view(uow, code), self._view(uow, into), moved, merged.shard)
            uow.commit()
        return after

    # --- the rules ----------------------------------------------------------------------------

    @staticmethod
    def _load(uow: MunicipalitiesUnitOfWork, code: str,
              *, for_update: bool = False) -> Municipality:
        m = uow.municipalities.get(code, for_update=for_update)
        if m is None:
            raise MunicipalityNotFound("the municipality is not registered", code=code)
        return m

    def _view(self, uow: MunicipalitiesUnitOfWork, code: str) -> MunicipalityView:
        return MunicipalityView(self._load(uow, code), tuple(uow.municipalities.shards(code)),
                                uow.municipalities.resident_count(code))

    @staticmethod
    def _require_active(m: Municipality) -> None:
        if not m.active:
            raise MunicipalityMerged("the municipality was merged into another", code=m.code,
                                     merged_into=m.merged_into or "")

    @staticmethod
    def _check_name_free(uow: MunicipalitiesUnitOfWork, shard: CrlShard) -> CrlShard | None:
        """The shard with ``shard``'s distribution-point name, if it is ``shard``'s
        municipality's own; CrlNameTaken if another municipality's."""
        found = uow.municipalities.shard_named(shard.prefecture_romaji, shard.city_romaji)
        if found is not None and found.municipality_code != shard.municipality_code:
            raise CrlNameTaken("another municipality's CRL shard has this distribution-point "
                               "name: choose another romaji", field="name_romaji",
                               municipality=found.municipality_code)
        return found

    def _shard_for(self, uow: MunicipalitiesUnitOfWork, m: Municipality, romaji: str,
                   now: datetime) -> str:
        """The shard of ``m`` renamed to ``romaji``: its own earlier shard of that name,
        reopened, or a new one; the current one is closed."""
        own = self._check_name_free(uow, CrlShard(m.shard, m.code, m.prefecture.name_romaji,
                                                  romaji))
        uow.municipalities.set_shard_closed(m.shard, now)
        if own is not None:
            uow.municipalities.set_shard_closed(own.name, None)
            return own.name
        ordinals = [1] + [int(s.name.rsplit("-", 1)[1])
                          for s in uow.municipalities.shards(m.code) if "-" in s.name]
        name = shard_name(m.code, max(ordinals) + 1)
        uow.municipalities.open_shard(CrlShard(name, m.code, m.prefecture.name_romaji, romaji),
                                      now)
        return name
