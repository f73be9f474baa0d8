"""The card certificates' planner: the request checked (step 1), then the lifecycle rules
applied inside the intent's transaction, giving each certificate its notAfter, predecessor and
signing↔auth partner (architecture §3.3, §4.1, §4.4; reference §1.3–1.4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from jpki.access.authz import Grant
from jpki.errors import (
    CertificateNotRenewable,
    Conflict,
    DuplicatePublicKey,
    EmigrationPending,
    InvalidInput,
    RenewalOutsideWindow,
    UnderageSigning,
)
from jpki.issuance.stages import (
    CertificatePlan,
    CertificateRef,
    CheckedKey,
    IssuanceOrder,
    IssuancePlan,
    ValidatedOrder,
)
from jpki.lifecycle.cards import CARD_KINDS, resolve_card
from jpki.lifecycle.proofing import consume_proofing
from jpki.lifecycle.residents import load_active_resident
from jpki.model import (
    Card,
    CertificateFacts,
    CertKind,
    CertStatus,
    RegistrySource,
    Resident,
)
from jpki.municipalities import Municipality
from jpki.ports import UnitOfWork
from jpki.public_keys import load_subject_key
from jpki.validity import (
    certificate_not_after,
    in_renewal_window,
    jst_date,
    may_hold_signing_certificate,
)

MunicipalityOf = Callable[[UnitOfWork, str], Municipality]


def issuing_order(kind: CertKind) -> int:
    # The auth certificate first: the signing certificate is capped by it (reference §1.4).
    return 1 if kind.is_signing else 0


def validate(order: IssuanceOrder) -> ValidatedOrder:
    """1. What needs no database: the request's shape and its public keys."""
    if not order.requests:
        raise InvalidInput("at least one public key is needed", field="keys")
    kinds = [r.kind for r in order.requests]
    if len(set(kinds)) != len(kinds) or any(k not in CARD_KINDS for k in kinds):
        raise InvalidInput("one key per card certificate kind", field="keys")
    keys = [CheckedKey(r.kind, load_subject_key(r.public_key)) for r in order.requests]
    if len({k.key.sha256 for k in keys}) != len(keys):
        raise DuplicatePublicKey("the signing and auth certificates need distinct keys")
    return ValidatedOrder(order=order,
                          keys=tuple(sorted(keys, key=lambda k: issuing_order(k.kind))))


def plan(uow: UnitOfWork, grant: Grant, validated: ValidatedOrder, now: datetime,
         municipality_of: MunicipalityOf) -> IssuancePlan:
    """1. The lifecycle rules, inside the transaction that will record the intents. ``grant``:
    the caller's, for issuing, renewing or a batch (jpki.access.authz)."""
    order = validated.order
    actor = grant.principal
    resident = load_active_resident(uow, order.resident_id, grant)
    if actor.at_counter:
        # reference §5: issuance and renewal only after identity proofing at the window.
        consume_proofing(uow, actor, order.proofing_id, resident.id,
                         "renewal" if order.renew else "issuance", now)
    card = resolve_card(uow, resident, order.card, now)
    municipality = municipality_of(uow, resident.municipality_code)
    if uow.issuance.keys_in_use([k.key.sha256 for k in validated.keys]):
        raise DuplicatePublicKey("this public key is already certified")
    history = [c for c in uow.issuance.history(resident.id, CARD_KINDS)
               if c.status is not CertStatus.ABANDONED]
    caps: dict[CertKind, datetime] = {}
    plans = []
    for checked in validated.keys:
        predecessor, renewal = _predecessor(history, resident, card, checked.kind, now,
                                            order.renew, order.renewing)
        plans.append((checked, predecessor, renewal))
    certificates = []
    for checked, predecessor, renewal in plans:
        kind = checked.kind
        cap = None
        if kind.is_signing:
            # reference §1.4: the signing certificate is also capped by the auth certificate.
            cap = caps.get(CertKind.CARD_AUTH) or _valid_auth_not_after(history, card, now)
        not_after = certificate_not_after(birth=resident.birth_date, issued_at=now,
                                          renewal=renewal, card_expiry=card.expires_on,
                                          cap=cap)
        caps[kind] = not_after
        certificates.append(CertificatePlan(
            kind=kind, key=checked.key, not_after=not_after, renewal=renewal,
            predecessor=_ref(predecessor), partner=_ref(_partner(history, card, kind, now))))
    return IssuancePlan(actor=actor, resident=resident, municipality=municipality,
                        card_id=card.id, card_number=card.number,
                        certificates=tuple(certificates),
                        delivery_required=actor.at_counter)


def _ref(cert: CertificateFacts | None) -> CertificateRef | None:
    return CertificateRef(cert.id, cert.serial) if cert is not None else None


def _predecessor(all_history: Sequence[CertificateFacts], resident: Resident, card: Card,
                 kind: CertKind, now: datetime, renew: bool,
                 renewing: str | None) -> tuple[CertificateFacts | None, bool]:
    """The rules of who may hold what (reference §1.3–1.4), and the certificate this one
    follows: (predecessor, whether it is a renewal)."""
    today = jst_date(now)
    if kind.is_signing:
        # reference §1.4: no signing certificate for residents under 15.
        if not may_hold_signing_certificate(resident.birth_date, today):
            raise UnderageSigning("no signing certificate is issued to a resident under 15")
        # reference §1.3 emigrants: from the departure date, from the 戸籍の附票 record.
        if resident.registry_source is RegistrySource.KOSEKI_FUHYO and \
                resident.emigrated_on is not None and today < resident.emigrated_on:
            raise EmigrationPending("the new signing certificate can be issued from the "
                                    "departure date")
    history = [c for c in all_history if c.kind is kind]
    current = [c for c in history if c.is_valid(now)]
    latest = max(history, key=lambda c: c.created_at, default=None)
    if renew:
        target = current[0] if current else None
        if renewing is not None and (target is None or target.serial != renewing):
            raise CertificateNotRenewable("only the resident's current valid certificate "
                                          "can be renewed", serial=renewing)
        if target is None:
            raise CertificateNotRenewable("there is no valid certificate to renew",
                                          kind=kind.value)
        if target.card_id != card.id:
            raise CertificateNotRenewable("the certificate belongs to another card",
                                          serial=target.serial)
        if not in_renewal_window(target.not_after, now):
            raise RenewalOutsideWindow("renewal opens 3 months before expiry",
                                       serial=target.serial)
        return target, True
    if current:
        raise Conflict("the resident already holds a valid certificate of this kind; "
                       "renew it or revoke it first", serial=current[0].serial,
                       kind=kind.value)
    return latest, False  # a re-issue: linkage old→new (architecture §4.6)


def _valid_auth_not_after(history: Sequence[CertificateFacts], card: Card,
                          now: datetime) -> datetime | None:
    auths = [c for c in history if c.kind is CertKind.CARD_AUTH and c.card_id == card.id
             and c.is_valid(now)]
    return max((c.not_after for c in auths), default=None)


def _partner(history: Sequence[CertificateFacts], card: Card, kind: CertKind,
             now: datetime) -> CertificateFacts | None:
    """The newest valid certificate of the other kind on the same card."""
    other = kind.counterpart
    candidates = [c for c in history if c.kind is other and c.card_id == card.id
                  and c.status is CertStatus.ISSUED and c.is_valid(now)]
    return max(candidates, key=lambda c: c.created_at, default=None)
