"""The card certificates' planner: the request checked (step 1), then the lifecycle rules
applied inside the intent's transaction, giving each certificate its notAfter, predecessor and
signing↔auth partner (architecture §3.3, §4.1, §4.4; reference §1.3–1.4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from jpki.access.authz import Grant
from jpki.access.principals import Principal
from jpki.errors import (
    CertificateNotRenewable,
    Conflict,
    DuplicatePublicKey,
    EmigrationPending,
    InternalError,
    InvalidInput,
    JpkiError,
    RenewalOutsideWindow,
    UnderageSigning,
)
from jpki.issuance.ports import IssuanceUnitOfWork
from jpki.issuance.stages import (
    CertificatePlan,
    CertificateRef,
    CheckedKey,
    IssuanceOrder,
    IssuancePlan,
    ValidatedOrder,
)
from jpki.lifecycle.cards import (
    CARD_KINDS,
    CardChoice,
    CardSpec,
    choose_card,
    validate_card_number,
)
from jpki.lifecycle.proofing import check_proofing, proofing_key, require_proofing_id
from jpki.lifecycle.residents import check_active_resident
from jpki.model import (
    CertificateFacts,
    CertKind,
    CertStatus,
    NewCard,
    RegistrySource,
    ResidentFacts,
)
from jpki.municipalities import Municipality
from jpki.public_keys import load_subject_key
from jpki.validity import (
    certificate_not_after,
    in_renewal_window,
    jst_date,
    may_hold_signing_certificate,
)

MunicipalityOf = Callable[[IssuanceUnitOfWork, str], Municipality]


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


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """1. An order the rules accepted, before anything is written for it: its plan (``card_id``
    None while its card is still to be created), the card to create, and the identity-proofing
    record it uses up (id, purpose, when). :func:`settle` writes both."""

    plan: IssuancePlan
    new_card: NewCard | None
    proofing: tuple[str, str, datetime] | None


def plan(uow: IssuanceUnitOfWork, grant: Grant, validated: ValidatedOrder, now: datetime,
         municipality_of: MunicipalityOf) -> IssuancePlan:
    """1. The lifecycle rules for one order, inside the transaction that will record its
    intents, and their writes (the card, the proofing record used). ``grant``: the caller's,
    for issuing, renewing or a batch (jpki.access.authz)."""
    (planned,) = plan_many(uow, grant, [(validated, now)], municipality_of)
    if isinstance(planned, JpkiError):
        raise planned
    if planned is None:  # pragma: no cover - a lone order conflicts with no other
        raise InternalError("a lone order was deferred")
    (settled,) = settle(uow, [planned])
    return settled


def plan_many(uow: IssuanceUnitOfWork, grant: Grant,
              orders: Sequence[tuple[ValidatedOrder, datetime]],
              municipality_of: MunicipalityOf) -> list[PlannedOrder | JpkiError | None]:
    """1. The lifecycle rules for several orders at once, with one read per kind of record for
    all of them (jpki.ports.IssuanceRecords) and nothing written: per order, its plan, the
    error that refuses it, or None — *deferred* — when it names a resident, public key,
    proofing record or card number that an earlier order of the same call (accepted or
    deferred) names too. A deferred order must be planned on its own (:func:`plan`) after the
    writes of the accepted ones (:func:`settle`), so it sees them exactly as it would have one
    order at a time."""
    actor = grant.principal
    records = uow.issuance
    counter = actor.at_counter
    residents = records.residents([v.order.resident_id for v, _ in orders])
    proofing_ids = [proofing_key(v.order.proofing_id) for v, _ in orders
                    if counter and v.order.proofing_id]
    proofings = records.proofings(proofing_ids) if proofing_ids else {}
    found = list(residents)
    active_cards = records.active_cards(found) if found else {}
    numbers = [n for v, _ in orders if (n := _spec_number(v.order.card)) is not None]
    taken = records.card_numbers_taken(numbers) if numbers else set()
    in_use = records.keys_in_use([k.key.sha256 for v, _ in orders for k in v.keys])
    histories = records.histories(found, CARD_KINDS) if found else {}
    claimed: set[tuple[str, str]] = set()
    out: list[PlannedOrder | JpkiError | None] = []
    for validated, now in orders:
        order = validated.order
        claims = {("resident", order.resident_id),
                  *(("key", k.key.sha256) for k in validated.keys)}
        if counter and order.proofing_id:
            claims.add(("proofing", proofing_key(order.proofing_id)))
        number = _spec_number(order.card)
        if number is not None:
            claims.add(("card", number))
        if not claimed.isdisjoint(claims):
            out.append(None)
            claimed |= claims
            continue
        try:
            resident = check_active_resident(residents.get(order.resident_id),
                                             order.resident_id, grant)
            proofing = None
            if counter:
                # reference §5: issuance and renewal only after identity proofing at the
                # window.
                key = require_proofing_id(order.proofing_id)
                check_proofing(proofings.get(key), actor, resident.id, now)
                proofing = (key, "renewal" if order.renew else "issuance", now)
            choice = choose_card(resident.birth_date, order.card,
                                 active_cards.get(resident.id), taken.__contains__, now)
            planned = _plan_order(validated, actor, resident, choice, now,
                                  municipality_of(uow, resident.municipality_code),
                                  in_use, histories.get(resident.id, ()))
        except JpkiError as exc:
            out.append(exc)  # nothing was written for it: it claims nothing
            continue
        claimed |= claims
        new_card = None if choice.existing is not None else NewCard(
            resident_id=resident.id, number=choice.number, expires_on=choice.expires_on,
            created_at=now)
        out.append(PlannedOrder(plan=planned, new_card=new_card, proofing=proofing))
    return out


def settle(uow: IssuanceUnitOfWork, planned: Sequence[PlannedOrder]) -> list[IssuancePlan]:
    """The writes of accepted orders, one statement each for all of them: their new cards
    created, their proofing records used up. The plans, with their cards' ids."""
    ids = iter(uow.issuance.add_cards([p.new_card for p in planned if p.new_card is not None]))
    uow.issuance.use_proofings([p.proofing for p in planned if p.proofing is not None])
    return [replace(p.plan, card_id=next(ids)) if p.new_card is not None else p.plan
            for p in planned]


def _spec_number(spec: CardSpec | None) -> str | None:
    """The card number a station gives, as the rules will read it (None when none, or when it
    is malformed: :func:`choose_card` refuses that in its turn)."""
    if spec is None or not spec.number:
        return None
    try:
        return validate_card_number(spec.number)
    except InvalidInput:
        return None


def _plan_order(validated: ValidatedOrder, actor: Principal, resident: ResidentFacts,
                choice: CardChoice, now: datetime, municipality: Municipality,
                in_use: set[str], all_history: Sequence[CertificateFacts]) -> IssuancePlan:
    order = validated.order
    if any(k.key.sha256 in in_use for k in validated.keys):
        raise DuplicatePublicKey("this public key is already certified")
    history = [c for c in all_history if c.status is not CertStatus.ABANDONED]
    card_id = choice.existing.id if choice.existing is not None else None
    caps: dict[CertKind, datetime] = {}
    plans = []
    for checked in validated.keys:
        predecessor, renewal = _predecessor(history, resident, card_id, checked.kind, now,
                                            order.renew, order.renewing)
        plans.append((checked, predecessor, renewal))
    certificates = []
    for checked, predecessor, renewal in plans:
        kind = checked.kind
        cap = None
        if kind.is_signing:
            # reference §1.4: the signing certificate is also capped by the auth certificate.
            cap = caps.get(CertKind.CARD_AUTH) or _valid_auth_not_after(history, card_id, now)
        not_after = certificate_not_after(birth=resident.birth_date, issued_at=now,
                                          renewal=renewal, card_expiry=choice.expires_on,
                                          cap=cap)
        caps[kind] = not_after
        certificates.append(CertificatePlan(
            kind=kind, key=checked.key, not_after=not_after, renewal=renewal,
            predecessor=_ref(predecessor),
            partner=_ref(_partner(history, card_id, kind, now))))
    return IssuancePlan(actor=actor, resident=resident, municipality=municipality,
                        card_id=card_id, card_number=choice.number,
                        certificates=tuple(certificates),
                        delivery_required=actor.at_counter)


def _on(cert: CertificateFacts, card_id: int | None) -> bool:
    """Whether ``cert`` is on the card ``card_id`` (a card still to be created holds none)."""
    return card_id is not None and cert.card_id == card_id


def _ref(cert: CertificateFacts | None) -> CertificateRef | None:
    return CertificateRef(cert.id, cert.serial) if cert is not None else None


def _predecessor(all_history: Sequence[CertificateFacts], resident: ResidentFacts,
                 card_id: int | None,
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
        if not _on(target, card_id):
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


def _valid_auth_not_after(history: Sequence[CertificateFacts], card_id: int | None,
                          now: datetime) -> datetime | None:
    auths = [c for c in history if c.kind is CertKind.CARD_AUTH and _on(c, card_id)
             and c.is_valid(now)]
    return max((c.not_after for c in auths), default=None)


def _partner(history: Sequence[CertificateFacts], card_id: int | None, kind: CertKind,
             now: datetime) -> CertificateFacts | None:
    """The newest valid certificate of the other kind on the same card."""
    other = kind.counterpart
    candidates = [c for c in history if c.kind is other and _on(c, card_id)
                  and c.status is CertStatus.ISSUED and c.is_valid(now)]
    return max(candidates, key=lambda c: c.created_at, default=None)
