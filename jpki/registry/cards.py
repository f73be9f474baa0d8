"""Cards (個人番号カード) and what happens to their certificates when a card's state changes.

A resident holds at most one active card. Both card certificates are bound to it: their validity is
capped by its expiry (reference §1.4), and its loss, return or replacement acts on them
(architecture §4):

- lost → every valid certificate on the card is put on hold (certificateHold, 一時保留); a card
  hold is never released (§3.2);
- found → the held certificates are revoked for good (cessationOfOperation) and new ones must be
  issued at the counter (§3.2: "the hold is cleared by revoking and re-issuing");
- returned (返納) → revoked (cessationOfOperation);
- replaced by a new card → revoked (superseded: the new card's certificates replace them); a
  lost card replaced by a new one (再交付) is closed the same way, its held certificates revoked
  for good (a card hold is never released, §3.2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from jpki.access.authz import Grant, Operation
from jpki.access.principals import Principal
from jpki.audit import AuditLog
from jpki.errors import CardConflict, CardInactive, CardNotFound, ResidentNotFound
from jpki.lifecycle.cards import CardSpec, resolve_card, validate_card_number
from jpki.lifecycle.revocation import RevocationResult, revoke_in
from jpki.model import Card, CardStatus, RevocationReason
from jpki.ports import Clock
from jpki.registry.ports import CardEventsUnitOfWork, CardEventsUnitOfWorkFactory


class CardEvent(StrEnum):
    LOST = "lost"
    FOUND = "found"
    RETURNED = "returned"


@dataclass(frozen=True)
class CardEventOutcome:
    card: Card
    revocations: list[RevocationResult]


class CardService:
    def __init__(self, uow_factory: CardEventsUnitOfWorkFactory,
                 clock: Clock, audit: AuditLog) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit

    def register(self, grant: Grant[Literal[Operation.CARD_REGISTER]], resident_id: str,
                 spec: CardSpec) -> CardEventOutcome:
        """A new card for the resident; an active or lost previous card is replaced (its
        certificates revoked as superseded, a hold made permanent) in the same transaction."""
        from jpki.lifecycle.residents import load_active_resident

        actor = grant.require(Operation.CARD_REGISTER)
        with self._uow() as uow:
            resident = load_active_resident(uow, resident_id, grant)
            now = self._clock.now()
            revocations: list[RevocationResult] = []
            old = uow.cards.active_for_resident(resident.id)
            if old is None:
                latest = uow.cards.latest_for_resident(resident.id)
                # A lost card's certificates are on hold until someone ends it: the finding
                # (revoked), the return, or — here — the new card that takes its place.
                old = latest if latest is not None and latest.status is CardStatus.LOST \
                    else None
            if old is not None:
                if spec.number and validate_card_number(spec.number) == old.number:
                    raise CardConflict("this card is already the active card", card=old.number)
                revocations = self._act_on_certificates(uow, actor, old,
                                                        RevocationReason.SUPERSEDED, now,
                                                        "card.replaced")
                old.status = CardStatus.REPLACED
                old.status_changed_at = now
            card = resolve_card(uow, resident, spec, now)
            self._audit.record(uow, actor=actor.actor, action="card.registered",
                               subject=card.number,
                               payload={"resident": resident.id,
                                        "expires_on": card.expires_on.isoformat(),
                                        "replaces": old.number if old else None})
            uow.commit()
        return CardEventOutcome(card=card, revocations=revocations)

    def latest(self, grant: Grant[Literal[Operation.RESIDENT_READ]],
               resident_id: str) -> Card | None:
        """The resident's newest card, whatever its state (a lost one may yet be found)."""
        grant.require(Operation.RESIDENT_READ)
        with self._uow() as uow:
            resident = uow.residents.get(resident_id[:64])
            if resident is None:
                raise ResidentNotFound("no resident with this id", resident=resident_id[:64])
            grant.require_municipality(resident.municipality_code)
            return uow.cards.latest_for_resident(resident.id)

    def record_event(self, grant: Grant[Literal[Operation.CARD_EVENT]], number: str,
                     event: CardEvent) -> CardEventOutcome:
        actor = grant.require(Operation.CARD_EVENT)
        return self._event(actor, number, event, grant.require_municipality)

    def report_lost(self, grant: Grant[Literal[Operation.CARD_LOSS_REPORT]],
                    number: str) -> CardEventOutcome:
        """A lost card reported to the call centre: the same hold as a counter's (§3.2), at
        any hour; the call centre serves every municipality."""
        actor = grant.require(Operation.CARD_LOSS_REPORT)
        return self._event(actor, number, CardEvent.LOST, lambda _code: None)

    def _event(self, actor: Principal, number: str, event: CardEvent,
               in_scope: Callable[[str], None]) -> CardEventOutcome:
        number = validate_card_number(number)
        with self._uow() as uow:
            card = uow.cards.get_by_number(number)
            if card is None:
                raise CardNotFound("no card with this number", card=number)
            resident = uow.residents.get(card.resident_id, for_update=True)
            assert resident is not None
            in_scope(resident.municipality_code)
            now = self._clock.now()
            if event is CardEvent.LOST:
                if card.status is not CardStatus.ACTIVE:
                    raise CardInactive("only an active card can be reported lost", card=number)
                reason, status = RevocationReason.CERTIFICATE_HOLD, CardStatus.LOST
            elif event is CardEvent.FOUND:
                if card.status is not CardStatus.LOST:
                    raise CardInactive("only a lost card can be found", card=number)
                # §3.2: a card hold is never released: the held certificates are revoked.
                reason, status = RevocationReason.CESSATION_OF_OPERATION, CardStatus.RETURNED
            else:
                if card.status not in (CardStatus.ACTIVE, CardStatus.LOST):
                    raise CardInactive("the card is no longer in use", card=number)
                reason, status = RevocationReason.CESSATION_OF_OPERATION, CardStatus.RETURNED
            revocations = self._act_on_certificates(uow, actor, card, reason, now,
                                                    f"card.{event.value}")
            card.status = status
            card.status_changed_at = now
            self._audit.record(uow, actor=actor.actor, action=f"card.{event.value}",
                               subject=card.number,
                               payload={"resident": resident.id,
                                        "revoked": [r.serial for r in revocations]})
            uow.commit()
        return CardEventOutcome(card=card, revocations=revocations)

    def _act_on_certificates(self, uow: CardEventsUnitOfWork, actor: Principal, card: Card,
                             reason: RevocationReason, now: datetime,
                             cause: str) -> list[RevocationResult]:
        results = []
        for cert in uow.certificates.for_card(card.id or 0):
            if cert.not_after < now:
                continue
            result = revoke_in(uow, self._audit, actor, cert, reason, now, now, cause=cause)
            results += result.all()
        return results
