"""The holder app's half of the signing-password reset (reference §4.5; architecture §7.1):
prove the card and its 4-digit PIN, check the holder's face against the card's, and obtain an
online password from the CA.

1. ask the CA for a challenge (``POST /v1/holder-app/challenges``);
2. on the card: SELECT JPKI-AP, read the auth certificate (EF 000A, no PIN needed), VERIFY the
   4-digit PIN, and have the auth key sign :func:`holder_auth_message` (COMPUTE DIGITAL
   SIGNATURE, P1 03: the card hashes with SHA-256 and pads, PKCS#1 v1.5);
3. read the face image from the 券面事項確認AP with 照合番号B (what the phone reads off the card's
   surface), compare it on the device with the camera's photo (:class:`FaceMatcher`), and sign a
   :class:`FaceCheckAssertion` with the app's registered key;
4. ``POST /v1/holder-app/online-passwords``: the CA answers the online password.

The face image and the PIN never leave the phone; the CA receives the image's SHA-256 only.
A failed comparison stops here: nothing is sent.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from devices.card import face_aps
from devices.card.client import JpkiCard
from devices.card.face_client import FaceApClient
from devices.card.jpki_ap import CertSlot, Key, Pin, SignScheme
from devices.reset_ca import ResetCa, b64
from jpki.errors import PolicyViolation
from jpki.protocol.pin_reset import FaceCheckAssertion, ResetPurpose, holder_auth_message


class FaceMismatch(PolicyViolation):
    code = "holder_app.face_mismatch"
    title = "The face does not match the card's face image"


class FaceMatcher(Protocol):
    def matches(self, card_photo: bytes, camera_photo: bytes) -> bool: ...


class ExactMatcher:
    """The reference app's stand-in for a face matcher: the same image bytes match. A real app
    runs a biometric comparison here (reference §4.5: it accepts someone else with some
    probability, which is why the PIN is asked too); the protocol is the same."""

    def matches(self, card_photo: bytes, camera_photo: bytes) -> bool:
        return hmac.compare_digest(hashlib.sha256(card_photo).digest(),
                                   hashlib.sha256(camera_photo).digest())


@dataclass(frozen=True, repr=False)
class OnlinePassword:
    value: str
    expires_at: str
    card: str  # the auth certificate's serial

    def __repr__(self) -> str:
        return f"OnlinePassword(card={self.card!r}, expires_at={self.expires_at!r})"


class HolderApp:
    def __init__(self, ca: ResetCa, app_id: str, key: ec.EllipticCurvePrivateKey,
                 matcher: FaceMatcher | None = None) -> None:
        self.ca = ca
        self.app_id = app_id
        self._key = key
        self.matcher = matcher or ExactMatcher()

    def read_card_photo(self, card: JpkiCard, code_b: str) -> bytes:
        """The face image of the 券面事項確認AP, opened with 照合番号B."""
        face = FaceApClient(card)
        face.select(face_aps.FaceAp.SURFACE)
        face.verify(face_aps.SURFACE_CODE_B, code_b)
        return face.read_card_face().photo

    def obtain_online_password(self, card: JpkiCard, *, auth_pin: str, code_b: str,
                               camera_photo: bytes) -> OnlinePassword:
        card_photo = self.read_card_photo(card, code_b)
        if not self.matcher.matches(card_photo, camera_photo):
            raise FaceMismatch("the face does not match the card's face image")
        challenge = self.ca.challenge("/v1/holder-app/challenges")
        card.select_jpki_ap()
        certificate = card.read_certificate(CertSlot.AUTH)
        card.verify_pin(Pin.AUTH, auth_pin)
        signature = card.compute_signature(
            Key.AUTH, holder_auth_message(ResetPurpose.ONLINE_PASSWORD, challenge),
            SignScheme.PKCS1_SHA256)
        assertion = FaceCheckAssertion(
            app=self.app_id, challenge=challenge, card=format(certificate.serial_number, "x"),
            face_image_sha256=hashlib.sha256(card_photo).digest(), matched=True,
            checked_at=datetime.now(UTC).replace(microsecond=0)).to_json()
        answer = self.ca.call("/v1/holder-app/online-passwords", {
            "challenge": b64(challenge),
            "auth_certificate": b64(certificate.public_bytes(Encoding.DER)),
            "auth_signature": b64(signature), "assertion": b64(assertion),
            "assertion_signature": b64(self._key.sign(assertion, ec.ECDSA(hashes.SHA256())))})
        return OnlinePassword(str(answer["online_password"]), str(answer["expires_at"]),
                              str(answer["card"]))
