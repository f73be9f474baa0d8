"""The counter workflow: enrol, renew, reset a PIN, report status.

``enroll`` in order, each step timed (bench/card.py breaks an enrolment down by step):

1. check the PINs the resident chose against the format rules (before touching anything);
2. record the identity proofing with the CA (refused unless the documents satisfy a pattern);
3. select JPKI-AP and authenticate to the card as the issuer;
4. have the card generate its key pairs (keys never leave the card) — the signing one only if
   the resident may hold a signing certificate (15 or over, reference §1.4);
5. ask the CA for the certificates;
6. write the certificates, the CA certificates and the availability file onto the card;
7. set the PINs (RESET RETRY COUNTER with the new value);
8. read everything back and verify: certificates byte for byte, each key's public half, and a
   signature with each key under its PIN that verifies with its certificate;
9. confirm delivery with the CA.

If anything fails after the CA issued certificates and before delivery is confirmed — a card
pulled out, a write refused — the station abandons them, which revokes them as "destroyed
before delivery" (jpki.registry.counter), so the CA never holds a certificate it cannot account for.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import AuthorityInformationAccessOID

from devices.card.client import JpkiCard
from devices.card.errors import CardError, WrongPin
from devices.card.jpki_ap import CertSlot, Key, Pin
from devices.card.pins import encode_pin
from devices.station.ca_client import CaClient, CaRefused
from jpki.errors import JpkiError
from jpki.protocol.cms import SHA256_DIGEST_INFO_PREFIX

CARD_SIGN, CARD_AUTH = "card_sign", "card_auth"


class EnrolmentFailed(JpkiError):
    code = "station.enrolment_failed"
    title = "The enrolment did not complete; what the CA issued was revoked"


class VerificationFailed(JpkiError):
    code = "station.verification_failed"
    title = "The card does not hold what was written to it"


@dataclass
class StepTimer:
    """Times each step, and tells ``on_step`` (the station's task report,
    devices.station.tasks) as each begins."""

    on_step: Callable[[str], None] | None = None
    steps: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.on_step is not None:
            self.on_step(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.steps.append((name, time.perf_counter() - start))


@dataclass(frozen=True)
class EnrolmentResult:
    resident_id: str
    card_number: str
    serials: dict[str, str]  # kind → serial
    proofing_pattern: str
    steps: list[tuple[str, float]]


def _pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _ca_issuers_url(cert: x509.Certificate) -> str:
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    for desc in aia:
        if desc.access_method == AuthorityInformationAccessOID.CA_ISSUERS:
            return str(desc.access_location.value)
    raise VerificationFailed("the certificate names no CA issuers URL")


class EnrolmentStation:
    def __init__(self, ca: CaClient, card: JpkiCard, issuer_key: rsa.RSAPrivateKey) -> None:
        self.ca = ca
        self.card = card
        self._issuer_key = issuer_key

    # --- enrol --------------------------------------------------------------------------

    def enroll(self, resident_id: str, *, proofing: dict[str, Any], auth_pin: str,
               sign_pin: str | None = None, card: dict[str, Any] | None = None,
               on_step: Callable[[str], None] | None = None) -> EnrolmentResult:
        timer = StepTimer(on_step)
        step = timer.step
        with step("check PIN formats"):
            encode_pin(Pin.AUTH, auth_pin)  # raises InvalidPinFormat naming the rule
            resident = self.ca.resident(resident_id)
            signing = bool(resident.get("signing_eligible"))
            if signing:
                if sign_pin is None:
                    raise EnrolmentFailed("a signing password is needed for a resident of 15 "
                                          "or over")
                encode_pin(Pin.SIGN, sign_pin)
        with step("record identity proofing"):
            proof = self.ca.record_proofing({"resident_id": resident_id, **proofing})
        with step("authenticate as issuer"):
            self.card.select_jpki_ap()
            self.card.authenticate_issuer(self._issuer_key)
        keys: dict[str, rsa.RSAPublicKey] = {}
        with step("generate key pairs on the card"):
            keys[CARD_AUTH] = self.card.generate_key_pair(Key.AUTH)
            if signing:
                keys[CARD_SIGN] = self.card.generate_key_pair(Key.SIGN)
        with step("issue certificates"):
            issued = self.ca.issue(resident_id, proof["id"],
                                   sign_pem=_pem(keys[CARD_SIGN]) if signing else None,
                                   auth_pem=_pem(keys[CARD_AUTH]), card=card)
        serials = {kind: c["serial"] for kind, c in issued.certificates.items()}
        try:
            certs = {kind: x509.load_pem_x509_certificate(c["pem"].encode())
                     for kind, c in issued.certificates.items()}
            with step("write certificates"):
                self._write(certs)
            with step("set PINs"):
                self.card.reset_retry_counter(Pin.AUTH, auth_pin)
                if signing and sign_pin is not None:
                    self.card.reset_retry_counter(Pin.SIGN, sign_pin)
            with step("read back and verify"):
                self._verify(certs, keys, {CARD_AUTH: auth_pin, CARD_SIGN: sign_pin})
            with step("confirm delivery"):
                for serial in serials.values():
                    self.ca.confirm_delivery(serial)
        except (CardError, JpkiError, ValueError) as exc:
            self._abandon(serials)
            raise EnrolmentFailed(f"the enrolment stopped ({type(exc).__name__}: "
                                  f"{getattr(exc, 'code', '')}); issued certificates were "
                                  "revoked as destroyed before delivery",
                                  serials=",".join(serials.values())) from exc
        return EnrolmentResult(resident_id=resident_id, card_number=issued.card_number,
                               serials=serials, proofing_pattern=proof["pattern"],
                               steps=timer.steps)

    def _abandon(self, serials: dict[str, str]) -> None:
        for serial in serials.values():
            try:
                self.ca.abandon(serial)
            except CaRefused as refused:
                if refused.status != 409:  # 409: delivered already (nothing to undo)
                    raise

    def _write(self, certs: dict[str, x509.Certificate]) -> None:
        for kind, slot, ca_slot in ((CARD_AUTH, CertSlot.AUTH, CertSlot.AUTH_CA),
                                    (CARD_SIGN, CertSlot.SIGN, CertSlot.SIGN_CA)):
            cert = certs.get(kind)
            if cert is None:
                continue
            self.card.write_certificate(slot, cert)
            self.card.write_certificate(ca_slot, self.ca.ca_certificate(_ca_issuers_url(cert)))
        self.card.set_availability(sign=CARD_SIGN in certs, auth=CARD_AUTH in certs)

    def _verify(self, certs: dict[str, x509.Certificate], keys: dict[str, rsa.RSAPublicKey],
                pins: dict[str, str | None]) -> None:
        for kind, slot, key, pin in ((CARD_AUTH, CertSlot.AUTH, Key.AUTH, Pin.AUTH),
                                     (CARD_SIGN, CertSlot.SIGN, Key.SIGN, Pin.SIGN)):
            cert = certs.get(kind)
            if cert is None:
                continue
            if cert.public_key() != keys[kind]:
                raise VerificationFailed("the CA certified another key than the card's")
            value = pins.get(kind)
            if value is not None:
                self.card.verify_pin(pin, value)  # the sign certificate is behind its PIN
            if self.card.read_certificate(slot) != cert:
                raise VerificationFailed("a certificate read back differs from the one written")
            if value is not None:
                digest = hashlib.sha256(b"jpki station read-back " + cert.serial_number
                                        .to_bytes(20, "big")).digest()
                signature = self.card.sign(key, SHA256_DIGEST_INFO_PREFIX + digest)
                public = cert.public_key()
                assert isinstance(public, rsa.RSAPublicKey)
                public.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))

    # --- renew, PIN reset, status -------------------------------------------------------

    def renew(self, resident_id: str, *, proofing: dict[str, Any],
              kinds: tuple[str, ...] = (CARD_AUTH, CARD_SIGN),
              on_step: Callable[[str], None] | None = None) -> EnrolmentResult:
        """New key pairs on the card and certificates from the CA's renewal (from 3 months
        before expiry); the PINs are the resident's and stay as they are."""
        timer = StepTimer(on_step)
        with timer.step("record identity proofing"):
            proof = self.ca.record_proofing({"resident_id": resident_id, **proofing})
        with timer.step("authenticate as issuer"):
            self.card.select_jpki_ap()
            self.card.authenticate_issuer(self._issuer_key)
        keys: dict[str, rsa.RSAPublicKey] = {}
        with timer.step("generate key pairs on the card"):
            for kind in kinds:
                keys[kind] = self.card.generate_key_pair(Key.SIGN if kind == CARD_SIGN
                                                         else Key.AUTH)
        with timer.step("renew certificates"):
            issued = self.ca.issue(resident_id, proof["id"],
                                   sign_pem=_pem(keys[CARD_SIGN]) if CARD_SIGN in keys
                                   else None,
                                   auth_pem=_pem(keys[CARD_AUTH]) if CARD_AUTH in keys
                                   else None, renewal=True)
        serials = {kind: c["serial"] for kind, c in issued.certificates.items()}
        try:
            certs = {kind: x509.load_pem_x509_certificate(c["pem"].encode())
                     for kind, c in issued.certificates.items()}
            with timer.step("write certificates"):
                self._write(certs)
            with timer.step("read back and verify"):
                for kind, cert in certs.items():
                    key = Key.SIGN if kind == CARD_SIGN else Key.AUTH
                    if self.card.read_public_key(key) != cert.public_key():
                        raise VerificationFailed("the card's key differs from the certified one")
                if CARD_AUTH in certs and \
                        self.card.read_certificate(CertSlot.AUTH) != certs[CARD_AUTH]:
                    raise VerificationFailed("the auth certificate read back differs")
            with timer.step("confirm delivery"):
                for serial in serials.values():
                    self.ca.confirm_delivery(serial)
        except (CardError, JpkiError, ValueError) as exc:
            self._abandon(serials)
            raise EnrolmentFailed("the renewal stopped; the new certificates were revoked",
                                  serials=",".join(serials.values())) from exc
        return EnrolmentResult(resident_id=resident_id, card_number=issued.card_number,
                               serials=serials, proofing_pattern=proof["pattern"],
                               steps=timer.steps)

    def pin_reset(self, resident_id: str, *, pin: Pin, new_value: str,
                  proofing: dict[str, Any],
                  on_step: Callable[[str], None] | None = None) -> None:
        """RESET RETRY COUNTER after identity proofing (reference §4.5: at the window)."""
        step = StepTimer(on_step).step
        with step("check PIN formats"):
            encode_pin(pin, new_value)
        with step("record identity proofing"):
            proof = self.ca.record_proofing({"resident_id": resident_id, **proofing})
            self.ca.authorise_pin_reset(resident_id, "sign" if pin is Pin.SIGN else "auth",
                                        proof["id"])
        with step("authenticate as issuer"):
            self.card.select_jpki_ap()
            self.card.authenticate_issuer(self._issuer_key)
        with step("set PINs"):
            self.card.reset_retry_counter(pin, new_value)
        with step("read back and verify"):
            try:
                self.card.verify_pin(pin, new_value)
            except WrongPin as exc:  # pragma: no cover - a card that ignored the reset
                raise VerificationFailed("the card does not accept the new PIN") from exc

    def status(self, *, sign_pin: str | None = None) -> dict[str, Any]:
        """The card's certificates with their status at the CA, and both PIN counters."""
        self.card.select_jpki_ap()
        out: dict[str, Any] = {"token_label": self.card.token_label(),
                               "pin_retries": {"auth": self.card.pin_retries(Pin.AUTH),
                                               "sign": self.card.pin_retries(Pin.SIGN)},
                               "certificates": {}}
        availability = self.card.availability()
        slots = []
        if availability.auth:
            slots.append((CARD_AUTH, CertSlot.AUTH))
        if availability.sign and sign_pin is not None:
            self.card.verify_pin(Pin.SIGN, sign_pin)
            slots.append((CARD_SIGN, CertSlot.SIGN))
        for kind, slot in slots:
            cert = self.card.read_certificate(slot)
            view = self.ca.certificate(format(cert.serial_number, "x"))
            out["certificates"][kind] = {"serial": view["serial"], "status": view["status"],
                                         "not_after": view["not_after"],
                                         "revocation_reason": view.get("revocation_reason")}
        return out
