"""Issuance and renewal of card certificates, in Boulder's order (DESIGN.md §3).

    1. validate the request (keys, resident, card, lifecycle rules)
    2. build the to-be-signed certificates
    3. lint them (jpki.lint); nothing unchecked is ever signed
    4. record the intent durably: serials reserved (unique), TBS stored, "signing" audited, commit
    5. sign each TBS in the HSM
    6. check each signed TBS equals the linted one and the signature verifies
    7. store the certificates, link them (old→new, signing↔auth), revoke what they supersede,
       audit "issued", commit

A crash between 4 and 7 leaves *pending* rows whose serials are known; :meth:`abandon_stale`
turns them into *abandoned* certificates, which CRLs and OCSP report as revoked (J-LIS's
"unspecified: destroyed before delivery", jpki-reference §3.2). The database therefore knows every
serial the HSM may have signed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.serialization import Encoding

from jpki.audit import AuditLog
from jpki.ca import CaService
from jpki.cards import CARD_KINDS, CardSpec, resolve_card
from jpki.errors import (
    CertificateNotFound,
    CertificateNotRenewable,
    Conflict,
    DuplicatePublicKey,
    EmigrationPending,
    InvalidInput,
    KeyStoreUnavailable,
    MunicipalityNotFound,
    RenewalOutsideWindow,
    UnderageSigning,
)
from jpki.lint import lint_end_entity, require_clean
from jpki.model import (
    Card,
    Certificate,
    CertKind,
    CertStatus,
    ClientRole,
    RegistrySource,
    Resident,
    RevocationReason,
)
from jpki.ports import Clock, KeyStore, UnitOfWork, UnitOfWorkFactory
from jpki.principals import Principal
from jpki.profiles import EndEntitySpec, Issuer, build_end_entity, issuance_identifier
from jpki.public_keys import SubjectKey, load_subject_key
from jpki.recipe import Recipe
from jpki.residents import load_active_resident
from jpki.revocation import revoke_in, set_revocation
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
class _Planned:
    request: KeyRequest
    key: SubjectKey
    predecessor: Certificate | None
    renewal: bool
    cert: Certificate | None = None
    key_label: str = ""  # the issuing CA generation's key in the HSM
    issuer: Issuer | None = None


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

    # --- public operations --------------------------------------------------------------

    def issue(self, actor: Principal, resident_id: str, requests: list[KeyRequest],
              card: CardSpec | None = None) -> list[IssuedCertificate]:
        """New card certificates for a resident (the first ones, or after a revocation)."""
        return self._run(actor, resident_id, requests, card, renew=False)

    def renew(self, actor: Principal, resident_id: str, requests: list[KeyRequest],
              card: CardSpec | None = None) -> list[IssuedCertificate]:
        """Renewal: from 3 months before expiry; the old certificate is revoked as superseded and
        linked old→new; the new one runs to the 6th birthday (§1.4)."""
        return self._run(actor, resident_id, requests, card, renew=True)

    def renew_serial(self, actor: Principal, serial: str, public_key: bytes,
                     card: CardSpec | None = None) -> IssuedCertificate:
        with self._uow() as uow:
            cert = uow.certificates.get_by_serial(serial)
            if cert is None:
                raise CertificateNotFound(f"no certificate with serial {serial}", serial=serial)
            resident_id, kind = cert.resident_id, cert.kind
        issued = self._run(actor, resident_id, [KeyRequest(kind, public_key)], card, renew=True,
                           renewing=serial)
        return issued[0]

    def abandon_stale(self, actor: Principal, older_than: timedelta) -> list[str]:
        """Turn pending intents older than ``older_than`` into abandoned (revoked) certificates."""
        now = self._clock.now()
        with self._uow() as uow:
            stale = list(uow.certificates.pending_before(now - older_than))
            for cert in stale:
                cert.status = CertStatus.ABANDONED
                set_revocation(cert, now, RevocationReason.UNSPECIFIED, now)
                cert.updated_at = now
                self._audit.record(uow, actor=actor.actor, action="certificate.abandoned",
                                   subject=cert.serial, payload={"kind": cert.kind.value})
            uow.commit()
        return [c.serial for c in stale]

    # --- the pipeline -------------------------------------------------------------------

    def _run(self, actor: Principal, resident_id: str, requests: list[KeyRequest],
             card_spec: CardSpec | None, *, renew: bool,
             renewing: str | None = None) -> list[IssuedCertificate]:
        actor.require_role(ClientRole.STATION)
        # 1. validate what needs no database
        if not requests:
            raise InvalidInput("at least one public key is needed", field="keys")
        kinds = [r.kind for r in requests]
        if len(set(kinds)) != len(kinds) or any(k not in CARD_KINDS for k in kinds):
            raise InvalidInput("one key per card certificate kind", field="keys")
        keys = [load_subject_key(r.public_key) for r in requests]
        if len({k.sha256 for k in keys}) != len(keys):
            raise DuplicatePublicKey("the signing and auth certificates need distinct keys")
        plans = sorted((_Planned(request=r, key=k, predecessor=None, renewal=False)
                        for r, k in zip(requests, keys, strict=True)),
                       key=lambda p: _issue_order(p.request.kind))

        with self._uow() as uow:
            now = self._clock.now()
            resident = load_active_resident(uow, resident_id, actor)
            card = resolve_card(uow, resident, card_spec, now)
            municipality = uow.municipalities.get(resident.municipality_code)
            if municipality is None:  # pragma: no cover - registered residents have one
                raise MunicipalityNotFound("the resident's municipality is missing")
            for plan in plans:
                if uow.certificates.public_key_in_use(plan.key.sha256):
                    raise DuplicatePublicKey("this public key is already certified",
                                             kind=plan.request.kind.value)
                self._check_rules(uow, resident, card, plan, now, renew, renewing)
            # 2–3. build and lint
            caps: dict[CertKind, datetime] = {}
            for plan in plans:
                kind = plan.request.kind
                gen, issuer = self._cas.current(uow, kind.ca)
                plan.key_label, plan.issuer = gen.key_label, issuer
                cap = None
                if kind.is_signing:
                    # §1.4: the signing certificate is also capped by the auth certificate.
                    cap = caps.get(CertKind.CARD_AUTH) or self._valid_auth_not_after(uow, card,
                                                                                     now)
                not_after = certificate_not_after(birth=resident.birth_date, issued_at=now,
                                                  renewal=plan.renewal,
                                                  card_expiry=card.expires_on, cap=cap)
                caps[kind] = not_after
                serial = new_serial()
                spec = EndEntitySpec(kind=kind, issuer=issuer, public_key=plan.key.key,
                                     serial=serial, not_before=now, not_after=not_after,
                                     municipality=municipality,
                                     subject_cn=issuance_identifier(municipality.code, kind),
                                     basic4=resident.basic4 if kind.is_signing else None)
                builder = build_end_entity(spec, self._recipe, self._urls)
                tbs, lint_cert = to_be_signed(builder, issuer.public_key)
                require_clean(lint_end_entity(lint_cert, kind=kind, issuer=issuer,
                                              recipe=self._recipe, basic4=spec.basic4),
                              f"{kind.value} certificate")
                # 4. record the intent
                plan.cert = Certificate(
                    id=None, serial=serial_hex(serial), kind=kind, resident_id=resident.id,
                    card_id=card.id, ca_generation_id=gen.id or 0, status=CertStatus.PENDING,
                    not_before=lint_cert.not_valid_before_utc,
                    not_after=lint_cert.not_valid_after_utc, shard=municipality.code,
                    registry_source=resident.registry_source,
                    public_key_sha256=plan.key.sha256, created_at=now, updated_at=now,
                    tbs_der=tbs, predecessor_id=plan.predecessor.id if plan.predecessor else None)
                uow.certificates.add(plan.cert)
                self._audit.record(uow, actor=actor.actor, action="certificate.signing",
                                   subject=plan.cert.serial,
                                   payload={"kind": kind.value, "resident": resident.id,
                                            "ca": f"{gen.ca.value}/g{gen.generation:02d}",
                                            "tbs_sha256": hashlib.sha256(tbs).hexdigest()})
            card_number = card.number
            uow.commit()

        # 5–6. sign outside any transaction; the intents are durable now
        signed: dict[int, bytes] = {}
        try:
            for plan in plans:
                assert plan.cert is not None and plan.cert.tbs_der is not None
                assert plan.issuer is not None
                signed_cert = sign_tbs(plan.cert.tbs_der, self._keys.rsa_key(plan.key_label),
                                       plan.issuer.public_key)
                signed[plan.cert.id or 0] = signed_cert.public_bytes(Encoding.DER)
        except Exception as exc:
            self._abandon([p.cert for p in plans if p.cert is not None], actor)
            if isinstance(exc, (Conflict, InvalidInput)):
                raise
            raise KeyStoreUnavailable("signing failed; the request was not completed") from exc

        # 7. store, link, supersede, audit
        with self._uow() as uow:
            now = self._clock.now()
            stored: list[Certificate] = []
            for plan in plans:
                assert plan.cert is not None and plan.cert.id is not None
                cert = uow.certificates.get(plan.cert.id)
                assert cert is not None
                cert.status = CertStatus.ISSUED
                cert.der = signed[cert.id or 0]
                cert.tbs_der = None  # the DER holds it now
                cert.updated_at = now
                stored.append(cert)
                if plan.renewal and plan.predecessor is not None:
                    old = uow.certificates.get_by_serial(plan.predecessor.serial, for_update=True)
                    assert old is not None
                    revoke_in(uow, self._audit, actor, old, RevocationReason.SUPERSEDED, now,
                              now, cause=f"renewed by {cert.serial}")
            self._link_siblings(uow, stored, now)
            for cert in stored:
                self._audit.record(uow, actor=actor.actor, action="certificate.issued",
                                   subject=cert.serial,
                                   payload={"kind": cert.kind.value, "resident": resident_id,
                                            "not_after": cert.not_after.isoformat(),
                                            "predecessor": _serial_of(uow, cert.predecessor_id),
                                            "sibling": _serial_of(uow, cert.sibling_id)})
            uow.commit()
            return [IssuedCertificate(serial=c.serial, kind=c.kind, der=c.der or b"",
                                      not_before=c.not_before, not_after=c.not_after,
                                      card_number=card_number,
                                      predecessor=_serial_of(uow, c.predecessor_id),
                                      renewal=p.renewal)
                    for c, p in zip(stored, plans, strict=True)]

    def _check_rules(self, uow: UnitOfWork, resident: Resident, card: Card, plan: _Planned,
                     now: datetime, renew: bool, renewing: str | None) -> None:
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
        history = [c for c in uow.certificates.for_resident(resident.id, [kind])
                   if c.status is not CertStatus.ABANDONED]
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

    @staticmethod
    def _valid_auth_not_after(uow: UnitOfWork, card: Card, now: datetime) -> datetime | None:
        auths = [c for c in uow.certificates.for_card(card.id or 0)
                 if c.kind is CertKind.CARD_AUTH and c.is_valid(now)]
        return max((c.not_after for c in auths), default=None)

    @staticmethod
    def _link_siblings(uow: UnitOfWork, stored: list[Certificate], now: datetime) -> None:
        """signing↔auth linkage (証明書紐付け情報, §3.3): certificates of one card point at each
        other; a newly issued one replaces its kind in the pair."""
        for cert in stored:
            other_kind = CertKind.CARD_AUTH if cert.kind.is_signing else CertKind.CARD_SIGN
            partner = next((c for c in stored if c.kind is other_kind), None)
            if partner is None:
                candidates = [c for c in uow.certificates.for_card(cert.card_id or 0)
                              if c.kind is other_kind and c.status is CertStatus.ISSUED
                              and not c.is_revoked(now) and c.not_after >= now]
                partner = max(candidates, key=lambda c: c.created_at, default=None)
            if partner is not None:
                cert.sibling_id = partner.id
                partner.sibling_id = cert.id

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
                                       subject=cert.serial, payload={"kind": cert.kind.value})
                uow.commit()
        except Exception:  # noqa: S110 - abandon_stale will retry; the original error matters
            pass


def _serial_of(uow: UnitOfWork, cert_id: int | None) -> str | None:
    if cert_id is None:
        return None
    cert = uow.certificates.get(cert_id)
    return cert.serial if cert else None
