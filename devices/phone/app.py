"""The phone app: apply, status, revoke, lift a suspension, check in — through the CA's REST API.

The phone's secure element (``se``) and the holder's card (``card``) are both
:class:`~devices.card.client.JpkiCard` clients, over whatever transport reaches them (PC/SC, or
in-process for tests). The app provisions its own secure element with an issuer key of its own
(``<state>.issuer.pem``, made by :func:`create_phone`): on a real phone that is the platform's
trusted provisioning path.

Every request is a document of jpki.protocol.mobile, signed where the CA requires it: the
application by the **card's** signing key under its signing password (CMS SignedData,
jpki.protocol.cms), later requests by the phone's mobile auth key under the phone's auth PIN — or
by the card. The app shares only that protocol (and the error hierarchy) with the CA
(architecture §2.3).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp

from devices.card.client import JpkiCard
from devices.card.emulator.card import JpkiCardEmulator
from devices.card.jpki_ap import TOKEN_LABEL_ANDROID, TOKEN_LABEL_IOS, CertSlot, Key, Pin
from jpki.errors import JpkiError
from jpki.protocol.cms import SHA256_DIGEST_INFO_PREFIX, build_signed_data
from jpki.protocol.documents import Document, one_of
from jpki.protocol.mobile import (
    ChallengePurpose,
    DeviceRevocationReason,
    MobileApplication,
    MobileCheckIn,
    MobileKind,
    MobileRevocation,
    MobileSuspensionLift,
    Platform,
    pop_message,
)

PLATFORM_LABELS = {"android": TOKEN_LABEL_ANDROID, "ios": TOKEN_LABEL_IOS}


class PhoneError(JpkiError):
    code = "phone.error"
    title = "The phone could not complete the request"


class CaAnswered(PhoneError):
    code = "phone.ca_refused"
    title = "The CA refused the request"

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail, status=status, ca_code=code)
        self.ca_code = code


def issuer_key_path(state: Path) -> Path:
    return state.with_name(state.name + ".issuer.pem")


def create_phone(state: Path, platform: str = "android") -> JpkiCardEmulator:
    """A new phone: a blank secure element with the platform's token label, and the app's own
    provisioning key (private, 0600) next to it."""
    label = PLATFORM_LABELS.get(platform)
    if label is None:
        raise PhoneError("platform is android or ios", field="platform")
    key = rsa.generate_private_key(65537, 2048)
    pem = key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path = issuer_key_path(state)
    path.touch(mode=0o600, exist_ok=False)
    path.write_bytes(pem)
    return JpkiCardEmulator.create(state, key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo), token_label=label)


def _digest_info_signer(token: JpkiCard, key: Key) -> Callable[[bytes], bytes]:
    """COMPUTE DIGITAL SIGNATURE over a SHA-256 DigestInfo (the key's PIN verified before)."""
    return lambda digest_info: token.sign(key, digest_info)


@dataclass
class PhoneApp:
    api: str
    se: JpkiCard
    issuer_key: rsa.RSAPrivateKey
    device_ref: str
    http: httpx.Client | None = None
    device_id: str = ""  # the CA's id for this phone, once an application succeeded

    def __post_init__(self) -> None:
        self._http = self.http or httpx.Client(base_url=self.api.rstrip("/"), timeout=30)

    # --- HTTP ------------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._http.post(path, json=body)
        if response.status_code >= 400:
            try:
                doc = response.json()
            except ValueError:
                doc = {}
            raise CaAnswered(response.status_code, str(doc.get("code", "")),
                             str(doc.get("detail", "")))
        return response.json()

    def _challenge(self, purpose: ChallengePurpose) -> bytes:
        return base64.b64decode(self._post("/v1/mobile/challenges",
                                           {"purpose": purpose.value})["challenge"])

    # --- the secure element ---------------------------------------------------------------

    def _provision_keys(self, kinds: list[MobileKind]) -> dict[MobileKind, rsa.RSAPublicKey]:
        self.se.select_jpki_ap()
        self.se.authenticate_issuer(self.issuer_key)
        return {kind: self.se.generate_key_pair(Key.SIGN if kind.is_signing else Key.AUTH)
                for kind in kinds}

    def _pop(self, challenge: bytes, kind: MobileKind, pin_value: str) -> bytes:
        key = Key.SIGN if kind.is_signing else Key.AUTH
        self.se.verify_pin(Pin.SIGN if kind.is_signing else Pin.AUTH, pin_value)
        digest = hashes.Hash(hashes.SHA256())
        digest.update(pop_message(challenge, self.device_ref, kind))
        return self.se.sign(key, SHA256_DIGEST_INFO_PREFIX + digest.finalize())

    def _store(self, issued: dict[str, Any]) -> dict[str, str]:
        self.se.select_jpki_ap()
        self.se.authenticate_issuer(self.issuer_key)
        chain = {x509.load_pem_x509_certificate(p.encode()).subject.rfc4514_string(): p
                 for p in issued["chain"]}
        serials = {}
        for cert in issued["certificates"]:
            parsed = x509.load_pem_x509_certificate(cert["pem"].encode())
            signing = cert["kind"] == MobileKind.SIGN.value
            self.se.write_certificate(CertSlot.SIGN if signing else CertSlot.AUTH, parsed)
            ca = chain.get(parsed.issuer.rfc4514_string())
            if ca is not None:
                self.se.write_certificate(CertSlot.SIGN_CA if signing else CertSlot.AUTH_CA,
                                          x509.load_pem_x509_certificate(ca.encode()))
            serials[cert["kind"]] = cert["serial"]
        self.se.set_availability(sign=True, auth=True)
        return serials

    # --- the holder's operations -------------------------------------------------------------

    def apply(self, card: JpkiCard, *, card_password: str, auth_pin: str,
              sign_password: str) -> dict[str, str]:
        """Apply with the card: new keys in the phone, the application signed by the card's
        signing key under its password, the certificates stored in the phone."""
        challenge = self._challenge(MobileApplication.PURPOSE)
        keys = self._provision_keys([MobileKind.SIGN, MobileKind.AUTH])
        # The phone's own passwords (they may equal the card's, §2).
        self.se.reset_retry_counter(Pin.AUTH, auth_pin)
        self.se.reset_retry_counter(Pin.SIGN, sign_password)
        platform = one_of(MobileApplication, "platform", Platform, self.se.token_label())
        sign_pop = self._pop(challenge, MobileKind.SIGN, sign_password)
        auth_pop = self._pop(challenge, MobileKind.AUTH, auth_pin)
        card.select_jpki_ap()
        card.verify_pin(Pin.SIGN, card_password)
        card_cert = card.read_certificate(CertSlot.SIGN)
        doc = MobileApplication(
            challenge=challenge, device=self.device_ref, platform=platform,
            card_sign_serial=format(card_cert.serial_number, "x"),
            sign_public_key=_spki(keys[MobileKind.SIGN]),
            auth_public_key=_spki(keys[MobileKind.AUTH]), sign_pop=sign_pop, auth_pop=auth_pop)
        signed = build_signed_data(doc.to_json(), card_cert.public_bytes(Encoding.DER),
                                   _digest_info_signer(card, Key.SIGN),
                                   datetime.now(UTC).replace(microsecond=0))
        issued = self._post("/v1/mobile/applications",
                            {"signed_data": base64.b64encode(signed).decode()})
        self.device_id = str(issued["device_id"])
        return self._store(issued)

    def _signed_by_phone(self, document: Document, auth_pin: str) -> str:
        self.se.select_jpki_ap()
        self.se.verify_pin(Pin.AUTH, auth_pin)
        cert = self.se.read_certificate(CertSlot.AUTH)
        signed = build_signed_data(document.to_json(), cert.public_bytes(Encoding.DER),
                                   _digest_info_signer(self.se, Key.AUTH),
                                   datetime.now(UTC).replace(microsecond=0))
        return base64.b64encode(signed).decode()

    def revoke(self, device_id: str, *, auth_pin: str, reason: str) -> list[dict[str, Any]]:
        """``reason``: device_change, sale or disposal (refused here, before any request)."""
        cause = one_of(MobileRevocation, "reason", DeviceRevocationReason, reason)
        doc = MobileRevocation(challenge=self._challenge(MobileRevocation.PURPOSE),
                               device=device_id, reason=cause)
        return list(self._post("/v1/mobile/revocations",
                               {"signed_data": self._signed_by_phone(doc, auth_pin)}))

    def check_in(self, device_id: str, *, auth_pin: str) -> dict[str, Any]:
        doc = MobileCheckIn(challenge=self._challenge(MobileCheckIn.PURPOSE), device=device_id)
        return dict(self._post("/v1/mobile/check-ins",
                               {"signed_data": self._signed_by_phone(doc, auth_pin)}))

    def lift_suspension(self, device_id: str, *, auth_pin: str,
                        sign_password: str) -> dict[str, str]:
        """The phone was found: a new signing key in the phone, the request signed with the
        (held) auth key; the auth certificate is released, the signing one re-issued."""
        challenge = self._challenge(MobileSuspensionLift.PURPOSE)
        (key,) = self._provision_keys([MobileKind.SIGN]).values()
        self.se.reset_retry_counter(Pin.SIGN, sign_password)
        doc = MobileSuspensionLift(challenge=challenge, device=device_id,
                                   sign_public_key=_spki(key),
                                   sign_pop=self._pop(challenge, MobileKind.SIGN, sign_password))
        issued = self._post("/v1/mobile/suspension-lifts",
                            {"signed_data": self._signed_by_phone(doc, auth_pin)})
        return self._store(issued)

    def status(self, *, auth_pin: str, sign_password: str | None = None) -> dict[str, str]:
        """Each certificate in the phone and what the CA's OCSP responder says of it.

        The auth PIN is verified first, in this session: on an Android secure element
        (JPKIAPGPSETOKEN) the auth certificate's EF is read-protected by it (reference §4.3), and
        a fresh session — `jpki-phone status` is one — has nothing verified. iOS tokens do not
        need it; asking on every platform keeps the command the same everywhere.
        """
        self.se.select_jpki_ap()
        self.se.verify_pin(Pin.AUTH, auth_pin)
        slots = [(MobileKind.AUTH, CertSlot.AUTH, CertSlot.AUTH_CA)]
        if sign_password is not None:
            self.se.verify_pin(Pin.SIGN, sign_password)
            slots.append((MobileKind.SIGN, CertSlot.SIGN, CertSlot.SIGN_CA))
        out = {}
        for kind, slot, ca_slot in slots:
            cert, issuer = self.se.read_certificate(slot), self.se.read_certificate(ca_slot)
            request = ocsp.OCSPRequestBuilder().add_certificate(
                cert, issuer, hashes.SHA256()).build().public_bytes(Encoding.DER)
            response = self._http.post("/ocsp", content=request,
                                       headers={"content-type": "application/ocsp-request"})
            answer = ocsp.load_der_ocsp_response(response.content)
            status = answer.certificate_status.name.lower()
            if answer.certificate_status is ocsp.OCSPCertStatus.REVOKED and \
                    answer.revocation_reason is not None:
                status += f" ({answer.revocation_reason.value})"
            out[kind.value] = status
        return out


def _spki(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
