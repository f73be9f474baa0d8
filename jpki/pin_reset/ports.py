"""What the signing-password reset reads and writes, as the narrow unit of work it is given
(architecture §2.3: narrow ports). The store's unit of work (jpki.store.uow) satisfies it
structurally, which mypy checks where the composition root (api.composition) passes it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from jpki.model import ApiClient, Card, Certificate
from jpki.ports import AuditedWork, PinResetRepository, ResidentReads, Transaction


class ResetCards(Protocol):
    def get(self, card_id: int) -> Card | None: ...


class ResetCertificates(Protocol):
    """The presented auth certificate by serial, and the card's certificates (its signing
    certificate must be valid for a reset)."""

    def get_by_serial(self, serial: str, *, for_update: bool = False) -> Certificate | None: ...
    def for_card(self, card_id: int) -> Sequence[Certificate]: ...


class AppClients(Protocol):
    """Registering a holder app as an API client."""

    def add(self, client: ApiClient) -> None: ...


class PinResetUnitOfWork(Transaction, AuditedWork, Protocol):
    @property
    def pin_reset(self) -> PinResetRepository: ...
    @property
    def residents(self) -> ResidentReads: ...
    @property
    def cards(self) -> ResetCards: ...
    @property
    def certificates(self) -> ResetCertificates: ...
    @property
    def clients(self) -> AppClients: ...


PinResetUnitOfWorkFactory = Callable[[], PinResetUnitOfWork]
