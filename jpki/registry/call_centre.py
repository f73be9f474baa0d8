"""The call centre's view of a caller: found only from what the holder can tell.

An agent never browses the registry. A caller gives their card number and date of birth; when
both match an active resident's card, the agent sees that card and the holder's smartphone
certificates — enough to put a lost phone or a lost card on hold (reference §2: "a lost phone
can be put on a temporary hold (一時保留) by calling a call centre") — and none of the basic 4
information: no name, no address, no sex (non-negotiable 7; the call centre's table entry grants
no registry read). A card number that exists and a date of birth that does not match it answer
exactly as an unknown card number does, so that the check cannot be used to learn either fact;
every attempt is audited under the agent's id with the card number only, never the date given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from jpki.access.authz import Grant, Operation
from jpki.audit import AuditLog
from jpki.errors import NotFound
from jpki.lifecycle.cards import validate_card_number
from jpki.model import (
    CardStatus,
    Certificate,
    CertKind,
    CertStatus,
    ResidentStatus,
    RevocationReason,
)
from jpki.ports import Clock
from jpki.registry.ports import CallCentreUnitOfWorkFactory


class CallerNotVerified(NotFound):
    code = "callcentre.caller_not_verified"
    title = "No card matches the card number and date of birth given"


class Standing(StrEnum):
    VALID = "valid"
    ON_HOLD = "on_hold"  # certificateHold (一時保留): a lost phone or card
    REVOKED = "revoked"


@dataclass(frozen=True)
class CallerCertificate:
    serial: str
    kind: CertKind
    standing: Standing
    not_after: datetime
    device_id: str | None


@dataclass(frozen=True)
class CallerFile:
    """What the agent may see of a verified caller."""

    resident_id: str  # opaque: what the hold operations take, never shown as personal data
    card_number: str
    card_status: CardStatus
    card_expires_on: date
    certificates: tuple[CallerCertificate, ...]

    @property
    def mobile(self) -> tuple[CallerCertificate, ...]:
        return tuple(c for c in self.certificates if c.kind.is_mobile)

    @property
    def holdable_phone(self) -> bool:
        return any(c.standing is Standing.VALID for c in self.mobile)


class CallCentre:
    def __init__(self, uow_factory: CallCentreUnitOfWorkFactory,
                 clock: Clock, audit: AuditLog) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit

    def verify_caller(self, grant: Grant[Literal[Operation.CALLER_VERIFY]], card_number: str,
                      birth_date: date) -> CallerFile:
        actor = grant.require(Operation.CALLER_VERIFY)
        number = validate_card_number(card_number)
        now = self._clock.now()
        with self._uow() as uow:
            card = uow.cards.get_by_number(number)
            resident = uow.residents.get(card.resident_id) if card is not None else None
            matched = (card is not None and resident is not None
                       and resident.status is ResidentStatus.ACTIVE
                       and resident.birth_date == birth_date)
            self._audit.record(uow, actor=actor.actor, action="callcentre.caller_checked",
                               subject=number, payload={"matched": matched})
            uow.commit()
            if not matched:
                raise CallerNotVerified()
            assert card is not None and resident is not None
            certificates = tuple(
                CallerCertificate(serial=c.serial, kind=c.kind, standing=_standing(c, now),
                                  not_after=c.not_after, device_id=c.device_id)
                for c in uow.certificates.for_resident(resident.id)
                if c.status is CertStatus.ISSUED and c.not_after >= now
                and (c.kind.is_mobile or c.card_id == card.id))
        return CallerFile(resident_id=resident.id, card_number=card.number,
                          card_status=card.status, card_expires_on=card.expires_on,
                          certificates=certificates)


def _standing(cert: Certificate, now: datetime) -> Standing:
    if not cert.is_revoked(now):
        return Standing.VALID
    if cert.revocation_reason is RevocationReason.CERTIFICATE_HOLD:
        return Standing.ON_HOLD
    return Standing.REVOKED
