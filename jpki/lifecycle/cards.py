"""The card an issuance binds its certificates to (architecture §4.3): found, or created on the
first issuance, and checked against what the station says is in the reader. Used by issuance;
the card events themselves are jpki.registry.cards."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from jpki.errors import CardConflict, CardExpired, CardInactive, InvalidInput
from jpki.model import Card, CardFacts, CardStatus, CertKind, Resident
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
    # One draw for the 16 digits (leading zeros kept): the same uniform choice as a digit at a
    # time, with one read of the system CSPRNG instead of sixteen.
    return f"{secrets.randbelow(10**16):016d}"


@dataclass(frozen=True, slots=True)
class CardChoice:
    """The card an issuance binds to: the active one (``existing``), or a new one to create
    with this number and expiry."""

    existing: Card | CardFacts | None
    number: str
    expires_on: date


def choose_card(birth_date: date, spec: CardSpec | None, active: Card | CardFacts | None,
                number_taken: Callable[[str], bool], now: datetime) -> CardChoice:
    """The rule on what was read: the resident's active card, and whether a number the station
    gives already belongs to a card record. A spec that contradicts the active card is refused:
    replacing a card is an explicit event."""
    spec = spec or CardSpec()
    number = validate_card_number(spec.number) if spec.number else None
    today = jst_date(now)
    if active is not None:
        if number is not None and number != active.number:
            raise CardConflict("the resident's active card has another number; record the "
                               "new card first", card=active.number)
        if spec.expires_on is not None and spec.expires_on != active.expires_on:
            raise CardConflict("the card expiry differs from the active card's",
                               card=active.number)
        if active.status is not CardStatus.ACTIVE:  # pragma: no cover - read as active
            raise CardInactive("the card is not active", card=active.number)
        if active.expires_on < today:
            raise CardExpired("the card has expired", card=active.number)
        return CardChoice(existing=active, number=active.number, expires_on=active.expires_on)
    if number is not None and number_taken(number):
        raise CardConflict("this card number belongs to another card record", card=number)
    number = number or new_card_number()
    expires = spec.expires_on or card_expiry(birth_date, today)
    if expires < today:
        raise CardExpired("the card has expired", card=number)
    return CardChoice(existing=None, number=number, expires_on=expires)


class CardRecords(Protocol):
    """The cards :func:`resolve_card` reads and adds."""

    def add(self, card: Card) -> None: ...
    def get_by_number(self, number: str) -> Card | None: ...
    def active_for_resident(self, resident_id: str) -> Card | None: ...


class CardWork(Protocol):
    """What :func:`resolve_card` reads and writes (architecture §2.3: narrow ports)."""

    @property
    def cards(self) -> CardRecords: ...


def resolve_card(uow: CardWork, resident: Resident, spec: CardSpec | None,
                 now: datetime) -> Card:
    """The resident's active card, created on first issuance when the resident has none."""
    active = uow.cards.active_for_resident(resident.id)
    choice = choose_card(resident.birth_date, spec, active,
                         lambda number: uow.cards.get_by_number(number) is not None, now)
    if active is not None:
        return active
    card = Card(id=None, resident_id=resident.id, number=choice.number,
                expires_on=choice.expires_on, status=CardStatus.ACTIVE, created_at=now,
                status_changed_at=now)
    uow.cards.add(card)
    return card
