"""Cards (個人番号カード) and what happens to their certificates when a card's state changes.

A resident holds at most one active card. Both card certificates are bound to it: their validity is
capped by its expiry (reference §1.4), and its loss, return or replacement acts on them
(architecture §4):

- lost → every valid certificate on the card is put on hold (certificateHold, 一時保留); a card
  hold is never released (§3.2);
- found → the held certificates are revoked for good (cessationOfOperation) and new ones must be
  issued at the counter (§3.2: "the hold is cleared by revoking and re-issuing");
- returned (返納) → revoked (cessationOfOperation);
- replaced by a new card → revoked (superseded: the new card's certificates replace them).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from jpki.audit import AuditLog
from jpki.errors import CardConflict, CardExpired, CardInactive, CardNotFound, InvalidInput
from jpki.model import Card, CardStatus, CertKind, ClientRole, Resident, RevocationReason
from jpki.ports import Clock, UnitOfWork, UnitOfWorkFactory
from jpki.principals import Principal
from jpki.revocation import RevocationResult, revoke_in
from jpki.validity import card_expiry, jst_date

_CARD_NUMBER = re.compile(r"^[A-Z0-9]{8,32}$")
CARD_KINDS = (CertKind.CARD_SIGN, CertKind.CARD_AUTH)


@dataclass(frozen=True)
class CardSpec:
    """What a station says about the card in the reader; both fields optional."""

    number: str | None = None
    expires_on: date | None = None


def validate_card_number(number: str) -> str:
    value = number.strip().upper()
    if not _CARD_NUMBER.match(value):
        raise InvalidInput("a card number is 8 to 32 characters of A-Z and 0-9", field="card")
    return value


def new_card_number() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(16))


def resolve_card(uow: UnitOfWork, resident: Resident, spec: CardSpec | None,
                 now: datetime) -> Card:
    """The resident's active card, created on first issuance when the resident has none.

    A spec that contradicts the active card is refused: replacing a card is an explicit event.
    """
    spec = spec or CardSpec()
    number = validate_card_number(spec.number) if spec.number else None
    card = uow.cards.active_for_resident(resident.id)
    today = jst_date(now)
    if card is not None:
        if number is not None and number != card.number:
            raise CardConflict("the resident's active card has another number; record the "
                               "new card first", card=card.number)
        if spec.expires_on is not None and spec.expires_on != card.expires_on:
            raise CardConflict("the card expiry differs from the active card's", card=card.number)
    else:
        if number is not None:
            existing = uow.cards.get_by_number(number)
            if existing is not None:
                raise CardConflict("this card number belongs to another card record",
                                   card=number)
        expires = spec.expires_on or card_expiry(resident.birth_date, today)
        card = Card(id=None, resident_id=resident.id, number=number or new_card_number(),
                    expires_on=expires, status=CardStatus.ACTIVE, created_at=now,
                    status_changed_at=now)
        if card.expires_on < today:
            raise CardExpired("the card has expired", card=card.number)
        uow.cards.add(card)
    if card.status is not CardStatus.ACTIVE:  # pragma: no cover - active_for_resident filters
        raise CardInactive("the card is not active", card=card.number)
    if card.expires_on < today:
        raise CardExpired("the card has expired", card=card.number)
    return card


class CardEvent(StrEnum):
    LOST = "lost"
    FOUND = "found"
    RETURNED = "returned"


@dataclass(frozen=True)
class CardEventOutcome:
    card: Card
    revocations: list[RevocationResult]


class CardService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, audit: AuditLog) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit

    def register(self, actor: Principal, resident_id: str, spec: CardSpec) -> CardEventOutcome:
        """A new card for the resident; an active previous card is replaced (its certificates
        revoked as superseded) in the same transaction."""
        from jpki.residents import load_active_resident

        actor.require_role(ClientRole.OPERATOR, ClientRole.STATION)
        with self._uow() as uow:
            resident = load_active_resident(uow, resident_id, actor)
            now = self._clock.now()
            revocations: list[RevocationResult] = []
            old = uow.cards.active_for_resident(resident.id)
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

    def record_event(self, actor: Principal, number: str, event: CardEvent) -> CardEventOutcome:
        actor.require_role(ClientRole.OPERATOR)
        number = validate_card_number(number)
        with self._uow() as uow:
            card = uow.cards.get_by_number(number)
            if card is None:
                raise CardNotFound("no card with this number", card=number)
            resident = uow.residents.get(card.resident_id, for_update=True)
            assert resident is not None
            actor.require_municipality(resident.municipality_code)
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

    def _act_on_certificates(self, uow: UnitOfWork, actor: Principal, card: Card,
                             reason: RevocationReason, now: datetime,
                             cause: str) -> list[RevocationResult]:
        results = []
        for cert in uow.certificates.for_card(card.id or 0):
            if cert.not_after < now:
                continue
            result = revoke_in(uow, self._audit, actor, cert, reason, now, now, cause=cause)
            results += result.all()
        return results
