"""The certificate authorities: key ceremony, generations, rollover and OCSP responder certificates.

`jpki init` runs :meth:`CaService.ceremony`: idempotent, so a second run changes nothing and a run
interrupted half-way resumes (a key generated in the token before a crash is found by its label and
used, never generated twice). `jpki ca rollover` adds a generation: same DN, new key (§1.1: all
generations share one DN; issuers are told apart by key identifier and signature).

Which keys may leave the token: every key the ceremony makes - the CA generations' keys, their
OCSP responders' keys, the audit and client-secret HMAC keys - is created *replicable*: sensitive
(never readable), extractable only wrapped under a key the token's security officer marked
trusted (CKA_WRAP_WITH_TRUSTED, hsm.keystore.REPLICABLE_KEY_PROTECTION). Every node of a cluster
signs with the same CA and responder keys and checks the same audit chain and client secrets, so
each of them must reach every node's token, by the ceremony of hsm.replication (docs/deployment.md,
"Key replication ceremony"). Anything else hsm makes (its transport keys, keys made outside the
ceremony) keeps the default: never extractable. Keys made before replication existed are never
extractable too, and the token refuses to wrap them (CKR_KEY_UNEXTRACTABLE).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from jpki.access.authz import Grant, Operation
from jpki.access.principals import Principal
from jpki.audit import AuditLog
from jpki.authority.lint import lint_responder, lint_root, require_clean
from jpki.authority.profiles import Issuer, build_ocsp_responder, build_root, root_validity
from jpki.authority.recipe import Recipe
from jpki.errors import CaNotInitialised
from jpki.model import CaGeneration, CaKind, OcspResponder
from jpki.municipalities import load_registry
from jpki.ports import Clock, KeyStore, UnitOfWork, UnitOfWorkFactory
from jpki.serials import new_serial, serial_hex
from jpki.signing import sign_tbs, to_be_signed

_DER = Encoding.DER
CURRENT_TTL_SECONDS = 5.0


@dataclass
class CeremonyReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created)


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


class CaService:
    def __init__(self, uow_factory: UnitOfWorkFactory, keys: KeyStore, clock: Clock,
                 recipe: Recipe, audit: AuditLog) -> None:
        self._uow = uow_factory
        self._keys = keys
        self._clock = clock
        self._recipe = recipe
        self._audit = audit
        self._issuers: dict[int, Issuer] = {}
        self._current: dict[CaKind, tuple[float, CaGeneration, Issuer]] = {}

    # --- the ceremony -------------------------------------------------------------------

    def ceremony(self, grant: Grant[Literal[Operation.CA_CEREMONY]]) -> CeremonyReport:
        actor = grant.require(Operation.CA_CEREMONY)
        report = CeremonyReport()
        label = self._recipe.audit_key_label
        if self._keys.has_key(label):
            report.unchanged.append(f"audit key {label}")
        else:
            self._keys.generate_hmac_key(label, replicable=True)
            report.created.append(f"audit key {label} (HMAC-SHA-256, in the token)")
        # Added by a later revision: `jpki init` on an older data directory creates it alone.
        label = self._recipe.client_secret_key_label
        if self._keys.has_key(label):
            report.unchanged.append(f"client-secret key {label}")
        else:
            self._keys.generate_hmac_key(label, replicable=True)
            report.created.append(f"client-secret key {label} (HMAC-SHA-256, in the token)")
        self._seed_municipalities(actor, report)
        for ca in CaKind:
            with self._uow() as uow:
                current = uow.cas.current(ca)
            if current is None:
                gen = self._create_generation(actor, ca, 1, report)
                report.created.append(
                    f"{ca.value} CA generation 1 ({gen.key_label}), "
                    f"SHA-256 {fingerprint(gen.certificate_der)}")
            else:
                report.unchanged.append(f"{ca.value} CA generation {current.generation}")
        self.ensure_responders(grant, report)
        return report

    def _seed_municipalities(self, actor: Principal, report: CeremonyReport) -> None:
        """Register every municipality of japancode's list that is not registered yet
        (jpki.municipalities.load_registry, architecture §5.6). A registered one is never
        changed — certificates name its romaji — except that an empty reading is filled in."""
        registry = load_registry()
        with self._uow() as uow:
            known = uow.municipalities.codes()
            added = [m for m in registry if m.code not in known]
            uow.municipalities.add_many(added, self._clock.now())
            filled = uow.municipalities.set_kana(
                {m.code: m.name_kana for m in registry if m.code in known and m.name_kana})
            if added or filled:
                self._audit.record(uow, actor=actor.actor, action="municipality.seeded",
                                   subject="municipalities",
                                   payload={"source": "japancode", "codes": [m.code for m in added],
                                            "readings_filled": filled})
                uow.commit()
            if added:
                report.created.append(f"{len(added)} municipalities from japancode's list")
            else:
                report.unchanged.append("municipalities")

    def rollover(self, grant: Grant[Literal[Operation.CA_ROLLOVER]], ca: CaKind) -> CaGeneration:
        actor = grant.require(Operation.CA_ROLLOVER)
        with self._uow() as uow:
            current = uow.cas.current(ca)
        if current is None:
            raise CaNotInitialised("run `jpki init` first")
        report = CeremonyReport()
        gen = self._create_generation(actor, ca, current.generation + 1, report)
        self._current.pop(ca, None)
        self.ensure_responders(grant, report)
        return gen

    def _create_generation(self, actor: Principal, ca: CaKind, generation: int,
                           report: CeremonyReport) -> CaGeneration:
        recipe = self._recipe.ca(ca)
        label = recipe.key_label(generation)
        if self._keys.has_key(label):
            # A crash after key generation but before the database commit: resume with the key.
            key = self._keys.rsa_key(label)
            report.unchanged.append(f"key {label} (already in the token)")
        else:
            key = self._keys.generate_rsa_key(label, recipe.key_bits, replicable=True)
        public = key.public_key()
        not_before, not_after = root_validity(recipe, self._clock.now())
        builder = build_root(recipe, public, new_serial(), not_before, not_after)
        tbs, lint_cert = to_be_signed(builder, public)
        require_clean(lint_root(lint_cert), f"{ca.value} root")
        cert = sign_tbs(tbs, key, public)
        ski = x509.SubjectKeyIdentifier.from_public_key(public).digest
        gen = CaGeneration(id=None, ca=ca, generation=generation, key_label=label,
                           certificate_der=cert.public_bytes(_DER), subject_key_id=ski,
                           not_before=cert.not_valid_before_utc,
                           not_after=cert.not_valid_after_utc, created_at=self._clock.now())
        with self._uow() as uow:
            uow.cas.add_generation(gen)
            self._audit.record(uow, actor=actor.actor, action="ca.generation_created",
                               subject=f"{ca.value}/g{generation:02d}",
                               payload={"serial": serial_hex(cert.serial_number),
                                        "sha256": fingerprint(gen.certificate_der),
                                        "key_label": label})
            uow.commit()
        return gen

    def ensure_responders(self, grant: Grant[Literal[Operation.CA_CEREMONY,
                                                     Operation.CA_ROLLOVER,
                                                     Operation.RESPONDERS_RENEW]],
                          report: CeremonyReport) -> None:
        """Give every unexpired generation a responder certificate with time left on it."""
        actor = grant.require(Operation.CA_CEREMONY, Operation.CA_ROLLOVER,
                              Operation.RESPONDERS_RENEW)
        now = self._clock.now()
        renew_before = timedelta(days=self._recipe.responder.renew_before_days)
        with self._uow() as uow:
            generations = [g for g in uow.cas.generations() if g.not_after > now]
            latest = {g.id: max(uow.cas.responders(g.id or 0), key=lambda r: r.not_after,
                                default=None) for g in generations}
        for gen in generations:
            current = latest[gen.id]
            name = f"{gen.ca.value} OCSP responder g{gen.generation:02d}"
            if current is not None and current.not_after - now > renew_before:
                report.unchanged.append(name)
                continue
            responder = self._issue_responder(actor, gen, now)
            report.created.append(f"{name} (valid to {responder.not_after.isoformat()})")

    def _issue_responder(self, actor: Principal, gen: CaGeneration,
                         now: datetime) -> OcspResponder:
        label = self._recipe.responder.key_label(gen.ca, gen.generation)
        if self._keys.has_key(label):
            key = self._keys.rsa_key(label)
        else:
            key = self._keys.generate_rsa_key(label, 2048, replicable=True)
        issuer = self.issuer_of(gen)
        not_after = min(now + timedelta(days=self._recipe.responder.validity_days), gen.not_after)
        serial = new_serial()
        builder = build_ocsp_responder(issuer, self._recipe, key.public_key(), serial,
                                       now - timedelta(minutes=5), not_after)
        tbs, lint_cert = to_be_signed(builder, issuer.public_key)
        require_clean(lint_responder(lint_cert, issuer), "OCSP responder certificate")
        cert = sign_tbs(tbs, self._keys.rsa_key(gen.key_label), issuer.public_key)
        responder = OcspResponder(id=None, ca_generation_id=gen.id or 0, key_label=label,
                                  serial=serial_hex(serial),
                                  certificate_der=cert.public_bytes(_DER),
                                  not_before=cert.not_valid_before_utc,
                                  not_after=cert.not_valid_after_utc, created_at=now)
        with self._uow() as uow:
            uow.cas.add_responder(responder)
            self._audit.record(uow, actor=actor.actor, action="ocsp_responder.issued",
                               subject=f"{gen.ca.value}/g{gen.generation:02d}",
                               payload={"serial": responder.serial, "key_label": label,
                                        "not_after": responder.not_after.isoformat()})
            uow.commit()
        return responder

    # --- lookups ------------------------------------------------------------------------

    def issuer_of(self, gen: CaGeneration) -> Issuer:
        gid = gen.id or 0
        cached = self._issuers.get(gid)
        if cached is None:
            cert = x509.load_der_x509_certificate(gen.certificate_der)
            public = cert.public_key()
            assert isinstance(public, rsa.RSAPublicKey)
            cached = Issuer(ca=gen.ca, generation=gen.generation, subject=cert.subject,
                            subject_key_id=gen.subject_key_id, public_key=public)
            self._issuers[gid] = cached
        return cached

    def current_cached(self, uow: UnitOfWork, ca: CaKind) -> tuple[CaGeneration, Issuer]:
        """:meth:`current`, remembered for a few seconds: issuance asks for it on every
        certificate, and a rollover (by any process) reaches issuance within that time."""
        entry = self._current.get(ca)
        if entry is not None and time.monotonic() - entry[0] < CURRENT_TTL_SECONDS:
            return entry[1], entry[2]
        gen, issuer = self.current(uow, ca)
        self._current[ca] = (time.monotonic(), gen, issuer)
        return gen, issuer

    def current(self, uow: UnitOfWork, ca: CaKind) -> tuple[CaGeneration, Issuer]:
        gen = uow.cas.current(ca)
        if gen is None:
            raise CaNotInitialised("run `jpki init` first")
        return gen, self.issuer_of(gen)

    def generations(self) -> list[CaGeneration]:
        with self._uow() as uow:
            return list(uow.cas.generations())

