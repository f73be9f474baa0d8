"""Issuance and renewal of card certificates, in Boulder's order (architecture §3).

    1. validate the request (keys, resident, card, lifecycle rules)
    2. build the to-be-signed certificates
    3. lint them (jpki.authority.lint); nothing unchecked is ever signed
    4. record the intent durably: serials reserved (unique), TBS stored, "signing" audited, commit
    5. sign each TBS in the HSM
    6. check each signed TBS equals the linted one and the signature verifies
    7. store the certificates, link them (old→new, signing↔auth), revoke what they supersede,
       audit "issued", commit

A crash between 4 and 7 leaves *pending* rows whose serials are known; :meth:`abandon_stale`
turns them into *abandoned* certificates, which CRLs and OCSP report as revoked (J-LIS's
"unspecified: destroyed before delivery", reference §3.2). The database therefore knows every
serial the HSM may have signed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from cryptography.hazmat.primitives.serialization import Encoding

from jpki.access.authz import Grant, Operation
from jpki.access.principals import Principal
from jpki.audit import AuditLog, JsonValue
from jpki.authority.ca import CaService
from jpki.authority.lint import lint_end_entity, require_clean
from jpki.authority.profiles import EndEntitySpec, Issuer, build_end_entity, issuance_identifier
from jpki.authority.recipe import Recipe
from jpki.errors import (
    CertificateNotFound,
    CertificateNotRenewable,
    Conflict,
    DuplicatePublicKey,
    EmigrationPending,
    InternalError,
    InvalidInput,
    JpkiError,
    KeyStoreUnavailable,
    MunicipalityNotFound,
    RenewalOutsideWindow,
    Unavailable,
    UnderageSigning,
)
from jpki.lifecycle.cards import CARD_KINDS, CardSpec, resolve_card
from jpki.lifecycle.proofing import consume_proofing
from jpki.lifecycle.residents import load_active_resident
from jpki.lifecycle.revocation import revoke_in, set_revocation
from jpki.model import (
    CaGeneration,
    Card,
    Certificate,
    CertKind,
    CertStatus,
    RegistrySource,
    Resident,
    RevocationReason,
)
from jpki.municipalities import Municipality
from jpki.ports import Clock, KeyStore, UnitOfWork, UnitOfWorkFactory
from jpki.public_keys import SubjectKey, load_subject_key
from jpki.serials import new_serial, serial_hex
from jpki.signing import sign_tbs, to_be_signed
from jpki.urls import ServiceUrls
from jpki.validity import (
    certificate_not_after,
    in_renewal_window,
    jst_date,
    may_hold_signing_certificate,
)


@dataclass(frozen=True)
class KeyRequest:
    kind: CertKind
    public_key: bytes  # SubjectPublicKeyInfo, PEM or DER, as the card exported it


@dataclass(frozen=True)
class IssuedCertificate:
    serial: str
    kind: CertKind
    der: bytes
    not_before: datetime
    not_after: datetime
    card_number: str
    predecessor: str | None
    renewal: bool

    def pem(self) -> bytes:
        from cryptography import x509

        return x509.load_der_x509_certificate(self.der).public_bytes(Encoding.PEM)


@dataclass
class Planned:
    request: KeyRequest
    key: SubjectKey
    predecessor: Certificate | None
    renewal: bool
    cert: Certificate | None = None
    key_label: str = ""  # the issuing CA generation's key in the HSM
    issuer: Issuer | None = None
    generation: CaGeneration | None = None
    partner: Certificate | None = None  # the other kind's valid certificate on the card
    sibling_serial: str | None = None
    not_after: datetime | None = None
    linked_id: int | None = None  # mobile: the card certificate it is linked to
    device_id: str | None = None  # mobile: the device holding its key


@dataclass(frozen=True)
class IssuanceOrder:
    """One resident's request: the card's public keys, and whether it renews."""

    resident_id: str
    requests: tuple[KeyRequest, ...]
    card: CardSpec | None = None
    renew: bool = False
    renewing: str | None = None  # renew exactly this certificate
    proofing_id: str | None = None  # required when a station asks (jpki.registry.counter)


@dataclass
class Prepared:
    resident_id: str
    card_number: str
    plans: list[Planned]
    signed: dict[int, bytes] = field(default_factory=dict)
    index: int = 0

    def results(self) -> list[IssuedCertificate]:
        out = []
        for plan in self.plans:
            cert = plan.cert
            assert cert is not None
            out.append(IssuedCertificate(
                serial=cert.serial, kind=cert.kind, der=self.signed[cert.id or 0],
                not_before=cert.not_before, not_after=cert.not_after,
                card_number=self.card_number,
                predecessor=plan.predecessor.serial if plan.predecessor else None,
                renewal=plan.renewal))
        return out


def _issue_order(kind: CertKind) -> int:
    # The auth certificate first: the signing certificate is capped by it (§1.4).
    return 0 if not kind.is_signing else 1


class IssuanceService:
    def __init__(self, uow_factory: UnitOfWorkFactory, keys: KeyStore, clock: Clock,
                 recipe: Recipe, urls: ServiceUrls, cas: CaService, audit: AuditLog) -> None:
        self._uow = uow_factory
        self._keys = keys
        self._clock = clock
        self._recipe = recipe
        self._urls = urls
        self._cas = cas
        self._audit = audit
        self._municipalities: dict[str, Municipality] = {}

    # --- public operations --------------------------------------------------------------

    def issue(self, grant: Grant[Literal[Operation.CERTIFICATE_ISSUE]], resident_id: str,
              requests: list[KeyRequest], card: CardSpec | None = None,
              proofing_id: str | None = None) -> list[IssuedCertificate]:
        """New card certificates for a resident (the first ones, or after a revocation).

        A station must name the identity-proofing record it made for this resident (single
        use, jpki.registry.counter); the CA's own operator CLI issues without one.
        """
        grant.require(Operation.CERTIFICATE_ISSUE)
        return self._run(grant, resident_id, requests, card, renew=False,
                         proofing_id=proofing_id)

    def renew(self, grant: Grant[Literal[Operation.CERTIFICATE_RENEW]], resident_id: str,
              requests: list[KeyRequest], card: CardSpec | None = None,
              proofing_id: str | None = None) -> list[IssuedCertificate]:
        """Renewal: from 3 months before expiry; the old certificate is revoked as superseded and
        linked old→new; the new one runs to the 6th birthday (§1.4)."""
        grant.require(Operation.CERTIFICATE_RENEW)
        return self._run(grant, resident_id, requests, card, renew=True, proofing_id=proofing_id)

    def renew_serial(self, grant: Grant[Literal[Operation.CERTIFICATE_RENEW]], serial: str,
                     public_key: bytes, card: CardSpec | None = None,
                     proofing_id: str | None = None) -> IssuedCertificate:
        grant.require(Operation.CERTIFICATE_RENEW)
        with self._uow() as uow:
            cert = uow.certificates.get_by_serial(serial)
            if cert is None:
                raise CertificateNotFound(f"no certificate with serial {serial}", serial=serial)
            resident_id, kind = cert.resident_id, cert.kind
        issued = self._run(grant, resident_id, [KeyRequest(kind, public_key)], card, renew=True,
                           renewing=serial, proofing_id=proofing_id)
        return issued[0]

    def abandon_stale(self, grant: Grant[Literal[Operation.PENDING_ABANDON]],
                      older_than: timedelta) -> list[str]:
        """Turn pending intents older than ``older_than`` into abandoned (revoked) certificates."""
        actor = grant.require(Operation.PENDING_ABANDON)
        now = self._clock.now()
        with self._uow() as uow:
            stale = list(uow.certificates.pending_before(now - older_than))
            for cert in stale:
                cert.status = CertStatus.ABANDONED
                set_revocation(cert, now, RevocationReason.UNSPECIFIED, now)
                cert.updated_at = now
                self._audit.record(uow, actor=actor.actor, action="certificate.abandoned",
                                   subject=cert.serial, payload=_abandoned(cert, now))
            uow.commit()
        return [c.serial for c in stale]

    # --- the pipeline -------------------------------------------------------------------

    def _run(self, grant: Grant[Literal[Operation.CERTIFICATE_ISSUE,
                                         Operation.CERTIFICATE_RENEW]],
             resident_id: str, requests: list[KeyRequest],
             card_spec: CardSpec | None, *, renew: bool, renewing: str | None = None,
             proofing_id: str | None = None) -> list[IssuedCertificate]:
        actor = grant.principal
        order = IssuanceOrder(resident_id, tuple(requests), card_spec, renew, renewing,
                              proofing_id)
        plans = self._validate(order)
        with self._uow() as uow:
            prepared = self._prepare(uow, grant, order, plans)
            uow.commit()  # 4. the intents are durable from here on
        self.sign([prepared], actor)
        with self._uow() as uow:
            self.store(uow, actor, [prepared])
            uow.commit()
        return prepared.results()

    def issue_batch(self, grant: Grant[Literal[Operation.CERTIFICATE_ISSUE_BATCH]],
                    orders: Sequence[IssuanceOrder], *,
                    chunk: int = 32) -> list[list[IssuedCertificate] | JpkiError]:
        """Bulk issuance (a day's applications, a municipality's batch): per order, the issued
        certificates or the error that refused it — an order refused does not stop the others.

        The same steps as a single issuance, with the database work amortised: one intent
        transaction and one store transaction per chunk of orders, each order in a savepoint
        so a refused one leaves nothing behind. The HSM signs one chunk on a signer thread
        while the next chunk is validated, built and linted, so the single signing stream is
        kept busy (python-pkcs11 releases the GIL while the token signs).
        """
        actor = grant.require(Operation.CERTIFICATE_ISSUE_BATCH)
        results: list[list[IssuedCertificate] | JpkiError | None] = [None] * len(orders)
        pending: tuple[list[Prepared], Future[None]] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpki-signer") as signer:
            for start in range(0, len(orders), max(1, chunk)):
                batch: list[Prepared] = []
                with self._uow() as uow:
                    for index in range(start, min(start + chunk, len(orders))):
                        try:
                            plans = self._validate(orders[index])
                            with uow.savepoint():
                                prepared = self._prepare(uow, grant, orders[index], plans)
                            prepared.index = index
                            batch.append(prepared)
                        except JpkiError as exc:
                            results[index] = exc
                    uow.commit()
                if pending is not None:
                    self._finish(actor, *pending, results)
                pending = (batch, signer.submit(self.sign, batch, actor))
            if pending is not None:
                self._finish(actor, *pending, results)
        return [r if r is not None else InternalError("not processed") for r in results]

    def _finish(self, actor: Principal, batch: list[Prepared], signing: Future[None],
                results: list[list[IssuedCertificate] | JpkiError | None]) -> None:
        try:
            signing.result()
        except JpkiError as exc:
            for prepared in batch:
                results[prepared.index] = exc
            return
        if not batch:
            return
        with self._uow() as uow:
            self.store(uow, actor, batch)
            uow.commit()
        for prepared in batch:
            results[prepared.index] = prepared.results()

    # --- the steps ------------------------------------------------------------------------

    def _validate(self, order: IssuanceOrder) -> list[Planned]:
        """1. What needs no database: the request's shape and its public keys."""
        if not order.requests:
            raise InvalidInput("at least one public key is needed", field="keys")
        kinds = [r.kind for r in order.requests]
        if len(set(kinds)) != len(kinds) or any(k not in CARD_KINDS for k in kinds):
            raise InvalidInput("one key per card certificate kind", field="keys")
        keys = [load_subject_key(r.public_key) for r in order.requests]
        if len({k.sha256 for k in keys}) != len(keys):
            raise DuplicatePublicKey("the signing and auth certificates need distinct keys")
        return sorted((Planned(request=r, key=k, predecessor=None, renewal=False)
                       for r, k in zip(order.requests, keys, strict=True)),
                      key=lambda p: _issue_order(p.request.kind))

    def _prepare(self, uow: UnitOfWork, grant: Grant, order: IssuanceOrder,
                 plans: list[Planned]) -> Prepared:
        """1–4 inside the caller's transaction: the lifecycle rules, build, lint, and the
        intent (serials reserved by the unique index, TBS kept, "signing" audited)."""
        actor = grant.principal
        now = self._clock.now()
        resident = load_active_resident(uow, order.resident_id, grant)
        if actor.at_counter:
            # §5: issuance and renewal only after identity proofing at the window.
            consume_proofing(uow, actor, order.proofing_id, resident.id,
                             "renewal" if order.renew else "issuance", now)
        card = resolve_card(uow, resident, order.card, now)
        municipality = self.municipality(uow, resident.municipality_code)
        if uow.certificates.public_keys_in_use([p.key.sha256 for p in plans]):
            raise DuplicatePublicKey("this public key is already certified")
        history = [c for c in uow.certificates.for_resident(resident.id, CARD_KINDS)
                   if c.status is not CertStatus.ABANDONED]
        for plan in plans:
            self._check_rules(history, resident, card, plan, now, order.renew, order.renewing)
        caps: dict[CertKind, datetime] = {}
        for plan in plans:
            kind = plan.request.kind
            cap = None
            if kind.is_signing:
                # §1.4: the signing certificate is also capped by the auth certificate.
                cap = caps.get(CertKind.CARD_AUTH) or _valid_auth_not_after(history, card, now)
            plan.not_after = certificate_not_after(
                birth=resident.birth_date, issued_at=now, renewal=plan.renewal,
                card_expiry=card.expires_on, cap=cap)
            caps[kind] = plan.not_after
            plan.partner = _partner(history, card, kind, now)
        self.mint(uow, actor, resident, municipality, card.id, plans, now)
        return Prepared(resident_id=resident.id, card_number=card.number, plans=plans)

    def mint(self, uow: UnitOfWork, actor: Principal, resident: Resident,
             municipality: Municipality, card_id: int | None, plans: list[Planned],
             now: datetime) -> None:
        """2–4 for planned certificates whose lifecycle rules and notAfter are settled: build,
        lint, record the intent (serials reserved by the unique index, TBS kept, "signing"
        audited). Shared by card and mobile issuance."""
        for plan in plans:
            kind = plan.request.kind
            assert plan.not_after is not None
            not_after = plan.not_after
            gen, issuer = self._cas.current_cached(uow, kind.ca)
            plan.key_label, plan.issuer, plan.generation = gen.key_label, issuer, gen
            serial = new_serial()
            spec = EndEntitySpec(kind=kind, issuer=issuer, public_key=plan.key.key,
                                 serial=serial, not_before=now, not_after=not_after,
                                 municipality=municipality,
                                 subject_cn=issuance_identifier(municipality.code, kind),
                                 basic4=resident.basic4 if kind.is_signing else None)
            # 2–3. build and lint: nothing unchecked is ever signed
            tbs, lint_cert = to_be_signed(build_end_entity(spec, self._recipe, self._urls),
                                          issuer.public_key)
            require_clean(lint_end_entity(lint_cert, kind=kind, issuer=issuer,
                                          recipe=self._recipe, basic4=spec.basic4),
                          f"{kind.value} certificate")
            plan.cert = Certificate(
                id=None, serial=serial_hex(serial), kind=kind, resident_id=resident.id,
                card_id=card_id, ca_generation_id=gen.id or 0, status=CertStatus.PENDING,
                not_before=lint_cert.not_valid_before_utc,
                not_after=lint_cert.not_valid_after_utc, shard=municipality.code,
                registry_source=resident.registry_source, public_key_sha256=plan.key.sha256,
                created_at=now, updated_at=now, tbs_der=tbs,
                predecessor_id=plan.predecessor.id if plan.predecessor else None,
                issued_by=actor.actor, delivery_required=actor.at_counter,
                linked_id=plan.linked_id, device_id=plan.device_id)
        # 4. the intent
        uow.certificates.add_many([p.cert for p in plans if p.cert is not None])
        for plan in plans:
            assert plan.cert is not None and plan.cert.tbs_der is not None
            assert plan.generation is not None
            self._audit.record(uow, actor=actor.actor, action="certificate.signing",
                               subject=plan.cert.serial,
                               payload={"kind": plan.cert.kind.value, "resident": resident.id,
                                        "ca": f"{plan.generation.ca.value}/"
                                              f"g{plan.generation.generation:02d}",
                                        "tbs_sha256": hashlib.sha256(
                                            plan.cert.tbs_der).hexdigest()})

    def sign(self, batch: list[Prepared], actor: Principal) -> None:
        """5–6. Sign each recorded TBS in the HSM and check the result; on failure the
        batch's intents are abandoned (reported as revoked) and the error raised."""
        try:
            for prepared in batch:
                for plan in prepared.plans:
                    assert plan.cert is not None and plan.cert.tbs_der is not None
                    assert plan.issuer is not None
                    signed = sign_tbs(plan.cert.tbs_der, self._keys.rsa_key(plan.key_label),
                                      plan.issuer.public_key)
                    prepared.signed[plan.cert.id or 0] = signed.public_bytes(Encoding.DER)
        except Exception as exc:
            self._abandon([p.cert for prepared in batch for p in prepared.plans
                           if p.cert is not None], actor)
            if isinstance(exc, JpkiError) and not isinstance(exc, Unavailable):
                raise
            raise KeyStoreUnavailable("signing failed; the request was not completed") from exc

    def store(self, uow: UnitOfWork, actor: Principal, batch: list[Prepared]) -> None:
        """7. Store the certificates, link them, supersede what they renew, audit."""
        now = self._clock.now()
        updates: list[tuple[int, bytes, int | None]] = []
        for prepared in batch:
            by_kind = {p.cert.kind: p.cert for p in prepared.plans if p.cert is not None}
            for plan in prepared.plans:
                cert = plan.cert
                assert cert is not None and cert.id is not None
                # signing↔auth linkage (証明書紐付け情報, §3.3): the pair, or the valid
                # certificate of the other kind on the same card.
                other = cert.kind.counterpart
                partner = by_kind.get(other) or plan.partner
                cert.sibling_id = partner.id if partner is not None else None
                updates.append((cert.id, prepared.signed[cert.id], cert.sibling_id))
                if plan.partner is not None and other not in by_kind:
                    uow.certificates.set_sibling(plan.partner.id or 0, cert.id)
                plan.sibling_serial = partner.serial if partner is not None else None
        uow.certificates.mark_issued(updates, now)
        for prepared in batch:
            for plan in prepared.plans:
                cert = plan.cert
                assert cert is not None
                if plan.renewal and plan.predecessor is not None:
                    old = uow.certificates.get_by_serial(plan.predecessor.serial, for_update=True)
                    assert old is not None
                    revoke_in(uow, self._audit, actor, old, RevocationReason.SUPERSEDED, now,
                              now, cause=f"renewed by {cert.serial}")
                self._audit.record(uow, actor=actor.actor, action="certificate.issued",
                                   subject=cert.serial,
                                   payload={"kind": cert.kind.value,
                                            "resident": prepared.resident_id,
                                            "not_after": cert.not_after.isoformat(),
                                            "predecessor": plan.predecessor.serial
                                            if plan.predecessor else None,
                                            # A renewal, or a first issue / re-issue (whose
                                            # predecessor is the revoked one it replaces).
                                            "renewal": plan.renewal,
                                            "sibling": plan.sibling_serial})

    @staticmethod
    def issuer_certificate(plan: Planned) -> bytes:
        """The DER certificate of the CA generation that issued a planned certificate."""
        assert plan.generation is not None
        return plan.generation.certificate_der

    def municipality(self, uow: UnitOfWork, code: str) -> Municipality:
        """Municipalities are registry data that never change once registered: cached."""
        cached = self._municipalities.get(code)
        if cached is None:
            cached = uow.municipalities.get(code)
            if cached is None:  # pragma: no cover - registered residents have one
                raise MunicipalityNotFound("the resident's municipality is missing")
            self._municipalities[code] = cached
        return cached

    @staticmethod
    def _check_rules(all_history: list[Certificate], resident: Resident, card: Card,
                     plan: Planned, now: datetime, renew: bool, renewing: str | None) -> None:
        kind = plan.request.kind
        today = jst_date(now)
        if kind.is_signing:
            # §1.4: no signing certificate for residents under 15.
            if not may_hold_signing_certificate(resident.birth_date, today):
                raise UnderageSigning("no signing certificate is issued to a resident under 15")
            # §1.3 emigrants: from the departure date, from the 戸籍の附票 record.
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
            plan.predecessor = target
            plan.renewal = True
        else:
            if current:
                raise Conflict("the resident already holds a valid certificate of this kind; "
                               "renew it or revoke it first", serial=current[0].serial,
                               kind=kind.value)
            plan.predecessor = latest  # re-issue: linkage old→new (§3.3)

    def _abandon(self, certs: list[Certificate], actor: Principal) -> None:
        try:
            now = self._clock.now()
            with self._uow() as uow:
                for pending in certs:
                    cert = uow.certificates.get(pending.id or 0)
                    if cert is None or cert.status is not CertStatus.PENDING:
                        continue
                    cert.status = CertStatus.ABANDONED
                    set_revocation(cert, now, RevocationReason.UNSPECIFIED, now)
                    self._audit.record(uow, actor=actor.actor, action="certificate.abandoned",
                                       subject=cert.serial, payload=_abandoned(cert, now))
                uow.commit()
        except Exception:  # noqa: S110 - abandon_stale will retry; the original error matters
            pass



def _abandoned(cert: Certificate, at: datetime) -> dict[str, JsonValue]:
    """The payload of "certificate.abandoned": with the revocation time it sets, which the record's
    own time may miss by the seconds the transaction took (replayed by
    jpki.lifecycle.audit_state)."""
    return {"kind": cert.kind.value, "revoked_at": at.isoformat()}


def _valid_auth_not_after(history: list[Certificate], card: Card,
                          now: datetime) -> datetime | None:
    auths = [c for c in history if c.kind is CertKind.CARD_AUTH and c.card_id == card.id
             and c.is_valid(now)]
    return max((c.not_after for c in auths), default=None)


def _partner(history: list[Certificate], card: Card, kind: CertKind,
             now: datetime) -> Certificate | None:
    """The newest valid certificate of the other kind on the same card."""
    other = CertKind.CARD_AUTH if kind.is_signing else CertKind.CARD_SIGN
    candidates = [c for c in history if c.kind is other and c.card_id == card.id
                  and c.status is CertStatus.ISSUED and c.is_valid(now)]
    return max(candidates, key=lambda c: c.created_at, default=None)
