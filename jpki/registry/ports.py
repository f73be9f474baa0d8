"""What each registry service reads and writes, as the narrow units of work it is given
(architecture §2.3: narrow ports).

Each service takes a factory of one of these, not of the whole :class:`jpki.ports.UnitOfWork`:
the type checker then refuses a reach into a repository the service was not given, and the
repositories are typed as the methods the registry calls. The store's unit of work
(jpki.store.uow) satisfies every one of them structurally, which mypy checks where the
composition root (api.composition) passes it. The pieces the shared rules need come from where
those rules live — :class:`~jpki.lifecycle.residents.ResidentWork`,
:class:`~jpki.lifecycle.cards.CardWork`, :class:`~jpki.lifecycle.proofing.ProofingWork`,
:class:`~jpki.lifecycle.revocation.RevocationWork`, :class:`~jpki.ports.AuditedWork` — so a
port that inherits one is accepted by that rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from jpki.lifecycle.cards import CardRecords, CardWork
from jpki.lifecycle.proofing import ProofingWork
from jpki.lifecycle.residents import ResidentReads, ResidentWork
from jpki.lifecycle.revocation import LinkedCertificates, RevocationWork
from jpki.model import ApiClient, CaGeneration, Card, Certificate, CertKind, DvRequest
from jpki.municipalities import CrlShard, Municipality
from jpki.ports import (
    AuditedWork,
    DvRequestRepository,
    ProofingRepository,
    ResidentRepository,
    StationTaskRepository,
    Transaction,
)

# --- The repositories, as much of each as the registry calls ----------------------------------


class MunicipalityReads(Protocol):
    def get(self, code: str, *, for_update: bool = False,
            for_share: bool = False) -> Municipality | None: ...


class MunicipalityRecords(MunicipalityReads, Protocol):
    """The registry of municipalities and their CRL shards (jpki.registry.municipalities)."""

    def add(self, municipality: Municipality, at: datetime | None = None) -> None: ...
    def all(self) -> Sequence[Municipality]: ...
    def update(self, code: str, **values: object) -> None: ...
    def shards(self, code: str) -> list[CrlShard]: ...
    def all_shards(self) -> list[CrlShard]: ...
    def shard_named(self, prefecture_romaji: str, city_romaji: str) -> CrlShard | None: ...
    def open_shard(self, shard: CrlShard, at: datetime) -> None: ...
    def set_shard_closed(self, name: str, closed_at: datetime | None) -> None: ...
    def move_residents(self, from_code: str, to_code: str, at: datetime) -> int: ...
    def resident_count(self, code: str) -> int: ...


class CardLookup(Protocol):
    def get_by_number(self, number: str) -> Card | None: ...


class CardHistory(CardRecords, Protocol):
    """A resident's cards: the active one, the latest, one by number, and a new one."""

    def latest_for_resident(self, resident_id: str) -> Card | None: ...


class HolderCertificates(Protocol):
    def for_resident(self, resident_id: str, kinds: Sequence[CertKind] | None = None,
                     ) -> Sequence[Certificate]: ...


class CardCertificates(LinkedCertificates, Protocol):
    def for_card(self, card_id: int) -> Sequence[Certificate]: ...


class ResidentCertificates(HolderCertificates, LinkedCertificates, Protocol):
    """A resident's certificates, revoked (with the linked mobile ones) by a resident event."""


class CertificateReads(HolderCertificates, Protocol):
    """The read view of a certificate (jpki.registry.certificates): its links by id."""

    def get(self, cert_id: int) -> Certificate | None: ...
    def get_by_serial(self, serial: str, *, for_update: bool = False) -> Certificate | None: ...
    def successor_of(self, cert_id: int) -> Certificate | None: ...


class DeliveryCertificates(LinkedCertificates, Protocol):
    """The counter's confirmations and abandonments of a delivery to the card (§3.5)."""

    def get_by_serial(self, serial: str, *, for_update: bool = False) -> Certificate | None: ...
    def undelivered_before(self, before: datetime) -> Sequence[Certificate]: ...


class CaReads(Protocol):
    def get(self, generation_id: int) -> CaGeneration | None: ...


class StationClients(Protocol):
    """The stations a task may be given to: API clients, read."""

    def get_by_client_id(self, client_id: str) -> ApiClient | None: ...
    def all(self) -> Sequence[ApiClient]: ...


class DvRequestFiling(Protocol):
    """What asking for DV support measures reads and writes (jpki.registry.dv_support)."""

    def add(self, request: DvRequest) -> None: ...
    def pending(self, resident_id: str | None = None) -> Sequence[DvRequest]: ...


# --- The units of work, one per service -------------------------------------------------------


class DvFilingWork(AuditedWork, Protocol):
    """What :func:`jpki.registry.dv_support.file_request` reads and writes."""

    @property
    def dv_requests(self) -> DvRequestFiling: ...


class CallCentreUnitOfWork(Transaction, AuditedWork, Protocol):
    """jpki.registry.call_centre: a card by number, its resident, the holder's certificates."""

    @property
    def cards(self) -> CardLookup: ...
    @property
    def residents(self) -> ResidentReads: ...
    @property
    def certificates(self) -> HolderCertificates: ...


class CardEventsUnitOfWork(Transaction, ResidentWork, CardWork, RevocationWork, Protocol):
    """jpki.registry.cards: the resident's cards, and the certificates a card event revokes."""

    @property
    def cards(self) -> CardHistory: ...
    @property
    def certificates(self) -> CardCertificates: ...


class CertificateQueryUnitOfWork(Transaction, Protocol):
    """jpki.registry.certificates: reads only (it never commits)."""

    @property
    def residents(self) -> ResidentReads: ...
    @property
    def certificates(self) -> CertificateReads: ...
    @property
    def cas(self) -> CaReads: ...


class CounterUnitOfWork(Transaction, ResidentWork, ProofingWork, RevocationWork, Protocol):
    """jpki.registry.counter: proofing records (recorded, consumed), deliveries, PIN resets."""

    @property
    def proofings(self) -> ProofingRepository: ...
    @property
    def certificates(self) -> DeliveryCertificates: ...


class DvSupportUnitOfWork(Transaction, ResidentWork, DvFilingWork, Protocol):
    """jpki.registry.dv_support: the two-person requests and the resident they change."""

    @property
    def dv_requests(self) -> DvRequestRepository: ...


class ExpiryNoticesUnitOfWork(Transaction, AuditedWork, Protocol):
    """jpki.registry.expiry_notices: the municipality asked for, and the export's audit record
    (the notices themselves come from their own snapshot, NoticeSource)."""

    @property
    def municipalities(self) -> MunicipalityReads: ...


class MunicipalitiesUnitOfWork(Transaction, AuditedWork, Protocol):
    """jpki.registry.municipalities: the municipalities and their CRL shards (§5.6)."""

    @property
    def municipalities(self) -> MunicipalityRecords: ...


class ResidentsUnitOfWork(Transaction, ResidentWork, RevocationWork, DvFilingWork, Protocol):
    """jpki.registry.residents: residents registered, found and changed; the municipality
    they register in; the certificates an event revokes; measures asked for at registration."""

    @property
    def residents(self) -> ResidentRepository: ...
    @property
    def municipalities(self) -> MunicipalityReads: ...
    @property
    def certificates(self) -> ResidentCertificates: ...


class StationTasksUnitOfWork(Transaction, ResidentWork, AuditedWork, Protocol):
    """jpki.registry.station_tasks: the tasks, the resident they are for, the stations."""

    @property
    def station_tasks(self) -> StationTaskRepository: ...
    @property
    def clients(self) -> StationClients: ...


CallCentreUnitOfWorkFactory = Callable[[], CallCentreUnitOfWork]
CardEventsUnitOfWorkFactory = Callable[[], CardEventsUnitOfWork]
CertificateQueryUnitOfWorkFactory = Callable[[], CertificateQueryUnitOfWork]
CounterUnitOfWorkFactory = Callable[[], CounterUnitOfWork]
DvSupportUnitOfWorkFactory = Callable[[], DvSupportUnitOfWork]
ExpiryNoticesUnitOfWorkFactory = Callable[[], ExpiryNoticesUnitOfWork]
MunicipalitiesUnitOfWorkFactory = Callable[[], MunicipalitiesUnitOfWork]
ResidentsUnitOfWorkFactory = Callable[[], ResidentsUnitOfWork]
StationTasksUnitOfWorkFactory = Callable[[], StationTasksUnitOfWork]
