"""The stages of an issuance, each one frozen value (architecture §3.3; Boulder's Prepare/Issue).

    request      IssuanceOrder (card) or the DeviceOrder a mobile application yields
      → ValidatedOrder   1. the request's shape and public keys, checked without the database
      → IssuancePlan     1. the product's rules, applied by its planner inside the intent's
                            transaction: jpki.issuance.card (validity, renewal, linkage on the
                            card), jpki.issuance.mobile (the card certificate's exact notAfter,
                            mobile→card linkage)
      → Draft            2–3. serial drawn, TBS built and linted
      → Intent           4. recorded (serial reserved, TBS kept, "certificate.signing"
                            audited) and committed; carries a redeem-once token
      → Signed           5–6. the HSM's signature over exactly the recorded TBS, checked
      → IssuedCertificate  7. stored, linked, audited (jpki.issuance_port)

Each stage is built only from the one before, by jpki.issuance.service, which owns the
transactions. An :class:`Intent` can be signed once: its :class:`RedeemToken` is armed when the
transaction that records it commits — not before, so nothing reaches the HSM that the database
does not know — and the signer redeems it before asking the HSM; a second redemption raises.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from jpki.access.principals import Principal
from jpki.authority.profiles import Issuer
from jpki.errors import InternalError
from jpki.issuance_port import IssuedCertificate
from jpki.lifecycle.cards import CardSpec
from jpki.model import CaGeneration, CertKind, Resident, ResidentFacts
from jpki.municipalities import Municipality
from jpki.public_keys import SubjectKey


class IntentNotRecorded(InternalError):
    code = "issuance.intent_not_recorded"
    title = "An issuance intent was to be signed before its record committed"


class IntentAlreadySigned(InternalError):
    code = "issuance.intent_already_signed"
    title = "An issuance intent was to be signed a second time"


class RedeemToken:
    """Once armed (the intent's record committed), redeemable exactly once, by one thread."""

    __slots__ = ("_lock", "_state")

    _RECORDING, _ARMED, _REDEEMED = 0, 1, 2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = self._RECORDING

    def arm(self) -> None:
        with self._lock:
            if self._state == self._RECORDING:
                self._state = self._ARMED

    def redeem(self, serial: str) -> None:
        with self._lock:
            state = self._state
            if state == self._ARMED:
                self._state = self._REDEEMED
                return
        if state == self._RECORDING:
            # architecture §3.3 step 4: the intent is durable before the HSM signs.
            raise IntentNotRecorded("the intent's record has not committed", serial=serial)
        raise IntentAlreadySigned("the intent was signed already", serial=serial)

    @property
    def redeemed(self) -> bool:
        return self._state == self._REDEEMED


@dataclass(frozen=True, slots=True)
class KeyRequest:
    kind: CertKind
    public_key: bytes  # SubjectPublicKeyInfo, PEM or DER, as the card exported it


@dataclass(frozen=True, slots=True)
class IssuanceOrder:
    """One resident's request: the card's public keys, and whether it renews."""

    resident_id: str
    requests: tuple[KeyRequest, ...]
    card: CardSpec | None = None
    renew: bool = False
    renewing: str | None = None  # renew exactly this certificate
    proofing_id: str | None = None  # required when a station asks (jpki.registry.counter)


@dataclass(frozen=True, slots=True)
class CheckedKey:
    kind: CertKind
    key: SubjectKey


@dataclass(frozen=True, slots=True)
class ValidatedOrder:
    """An order whose shape and keys are checked; keys in issuing order (auth first: the
    signing certificate is capped by it, reference §1.4)."""

    order: IssuanceOrder
    keys: tuple[CheckedKey, ...]


@dataclass(frozen=True, slots=True)
class CertificateRef:
    id: int
    serial: str


@dataclass(frozen=True, slots=True)
class CertificatePlan:
    """One certificate as its product's rules settled it."""

    kind: CertKind
    key: SubjectKey
    not_after: datetime
    renewal: bool = False  # supersedes ``predecessor`` when stored (reference §1.4)
    predecessor: CertificateRef | None = None  # linkage old→new (renewal or re-issue)
    # The valid certificate of the other kind to link signing↔auth with, when it is not in
    # the same plan.
    partner: CertificateRef | None = None
    linked: CertificateRef | None = None  # mobile: the card certificate it follows
    device_id: str | None = None  # mobile: the device holding its key


@dataclass(frozen=True, slots=True)
class IssuancePlan:
    actor: Principal
    # The card planner reads the resident as a plain value (jpki.ports.IssuanceRecords); the
    # mobile planner has the entity its application verified.
    resident: Resident | ResidentFacts
    municipality: Municipality
    card_id: int | None
    card_number: str
    certificates: tuple[CertificatePlan, ...]  # in issuing order
    delivery_required: bool  # a station must confirm the card holds them (§3.5)


@dataclass(frozen=True, slots=True)
class Draft:
    """2–3: the linted TBS of one planned certificate, not yet recorded."""

    plan: CertificatePlan
    serial: str
    tbs: bytes = field(repr=False)
    not_before: datetime
    not_after: datetime
    generation: CaGeneration
    issuer: Issuer


@dataclass(frozen=True, slots=True)
class Intent:
    """4: a recorded draft — its row's id — and the token that lets it be signed once."""

    draft: Draft
    cert_id: int
    token: RedeemToken = field(repr=False, compare=False)

    @property
    def serial(self) -> str:
        return self.draft.serial


@dataclass(frozen=True, slots=True)
class Recorded:
    """4: every intent of one plan, recorded in one transaction."""

    plan: IssuancePlan
    intents: tuple[Intent, ...]

    def arm(self) -> None:
        for intent in self.intents:
            intent.token.arm()


@dataclass(frozen=True, slots=True)
class Signed:
    """5–6: the checked certificates (DER), in the order of the recorded intents."""

    recorded: Recorded
    certificates: tuple[bytes, ...] = field(repr=False)

    def results(self) -> list[IssuedCertificate]:
        plan = self.recorded.plan
        return [IssuedCertificate(
            serial=intent.serial, kind=intent.draft.plan.kind, der=der,
            not_before=intent.draft.not_before, not_after=intent.draft.not_after,
            card_number=plan.card_number,
            predecessor=intent.draft.plan.predecessor.serial
            if intent.draft.plan.predecessor else None,
            renewal=intent.draft.plan.renewal)
            for intent, der in zip(self.recorded.intents, self.certificates, strict=True)]
