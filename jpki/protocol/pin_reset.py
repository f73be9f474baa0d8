"""What the holder's app, the convenience-store kiosk, the card and the CA exchange to reset a
signing password with an online password (reference §4.5, "Resetting the signing password at a
convenience store"; the flow is this project's design where the real one is not public,
architecture §7.1).

Four things are signed, each over bytes of its own so that no signature can stand in for another:

- :func:`holder_auth_message` — what the card's **user-authentication key** signs (after the
  holder's 4-digit PIN) over a challenge the CA issued: proof that the card and the PIN are at
  the app, or at the kiosk. The purpose is in the message, so the app's proof cannot be replayed
  at a kiosk or the other way round.
- :class:`FaceCheckAssertion` — what the holder app's **registered key** signs (ECDSA P-256 with
  SHA-256): that the face the phone's camera saw matched the face image read from the card's
  券面事項確認AP, for this card (its auth certificate's serial) and this challenge, at this time.
  The comparison runs on the device; the CA judges who asserts it, how fresh it is and what it
  names.
- :func:`card_reset_message` — what the CA's **card-management key** (the issuer key the card
  trusts for EXTERNAL AUTHENTICATE) signs to let the card reset its signing PIN once: the card's
  own fresh GET CHALLENGE answer and the SHA-256 of the card's auth certificate, after a domain
  prefix. The card checks both (devices.card.emulator.card), so the kiosk can relay it to that
  card only, once, and for nothing but the signing PIN — a plain EXTERNAL AUTHENTICATE signature
  (over the bare challenge) is a different message.
- the online password itself, which the holder types at the kiosk
  (:func:`normalise_online_password`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Self

from jpki.errors import InvalidInput
from jpki.protocol.documents import Document, b64


class PinResetError(InvalidInput):
    code = "pin_reset.invalid"
    title = "The signing-password reset request is invalid"


class ResetPurpose(StrEnum):
    """What a CA challenge is for: the app's online password, or a kiosk's reset."""

    ONLINE_PASSWORD = "online_password"  # noqa: S105 - a purpose's name, not a password
    KIOSK_RESET = "kiosk_reset"


HOLDER_AUTH_DOMAIN = b"jpki-pin-reset-holder/1\x00"
CARD_RESET_DOMAIN = b"jpki-sign-pin-reset/1\x00"
CHALLENGE_BYTES = 32  # what the CA issues
CARD_CHALLENGE_BYTES = 32  # what the kiosk asks the card for (GET CHALLENGE Le)
MIN_CARD_CHALLENGE = 16  # the card refuses shorter ones (devices.card.emulator.card)

# The online password: 12 characters of an alphabet without look-alikes (no 0/O, 1/I/L), shown
# in groups of four; 12 × log2(31) ≈ 59 bits. A kiosk allows few tries per password
# (jpki.kiosk.rules.PASSWORD_TRIES), so guessing is hopeless; the slow hash protects the store.
ONLINE_PASSWORD_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # noqa: S105 - an alphabet
ONLINE_PASSWORD_LENGTH = 12
_TYPED = re.compile(r"[A-Za-z0-9 \-]{1,40}")


def holder_auth_message(purpose: ResetPurpose, challenge: bytes) -> bytes:
    """What the card's auth key signs (PKCS#1 v1.5, SHA-256) for ``purpose``."""
    return HOLDER_AUTH_DOMAIN + purpose.value.encode("ascii") + b"\x00" + challenge


def card_reset_message(card_challenge: bytes, auth_certificate_der: bytes) -> bytes:
    """What the card-management key signs (PKCS#1 v1.5, SHA-256) to let the card whose auth
    certificate is ``auth_certificate_der`` reset its signing PIN once, against
    ``card_challenge``."""
    return CARD_RESET_DOMAIN + hashlib.sha256(auth_certificate_der).digest() + card_challenge


def normalise_online_password(typed: str) -> str:
    """The online password as typed (any case, with spaces or hyphens between the groups) in
    its canonical form; PinResetError naming the field, never echoing the value."""
    if not _TYPED.fullmatch(typed):
        raise PinResetError("the online password is letters and digits", field="online_password")
    value = typed.replace(" ", "").replace("-", "").upper()
    if len(value) != ONLINE_PASSWORD_LENGTH or any(c not in ONLINE_PASSWORD_ALPHABET
                                                   for c in value):
        raise PinResetError(f"the online password is {ONLINE_PASSWORD_LENGTH} characters of "
                            f"{ONLINE_PASSWORD_ALPHABET}", field="online_password")
    return value


def group_online_password(value: str) -> str:
    """``ABCDEFGHJKMN`` → ``ABCD-EFGH-JKMN``: how the app shows it."""
    return "-".join(value[i:i + 4] for i in range(0, len(value), 4))


def decode_b64(value: object, field: str, limit: int = 8192) -> bytes:
    """A base64 member of a request body, or PinResetError naming ``field``."""
    if not isinstance(value, str) or not value or len(value) > limit:
        raise PinResetError(f"{field} must be base64", field=field)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PinResetError(f"{field} must be base64", field=field) from exc


_SERIAL = re.compile(r"[0-9a-f]{1,40}")
_APP_ID = re.compile(r"jpki_[0-9a-f]{24}")


@dataclass(frozen=True)
class FaceCheckAssertion(Document):
    """The holder app's statement that the face check passed, signed with its registered key.

    ``app`` is the app's client id; ``challenge`` the CA's challenge of this exchange (single
    use, so the assertion is too); ``card`` the serial (lower-case hex) of the card's auth
    certificate the holder proved with; ``face_image_sha256`` the digest of the image read from
    the card (the CA never sees the image); ``matched`` the on-device comparison's verdict;
    ``checked_at`` when it ran (UTC, seconds).
    """

    TYPE: ClassVar[str] = "jpki-face-check"
    error: ClassVar[type[InvalidInput]] = PinResetError

    app: str
    challenge: bytes
    card: str
    face_image_sha256: bytes
    matched: bool
    checked_at: datetime

    def __post_init__(self) -> None:
        if not _APP_ID.fullmatch(self.app):
            self.refuse("app is a client id", "app")
        if len(self.challenge) != CHALLENGE_BYTES:
            self.refuse(f"challenge is {CHALLENGE_BYTES} bytes", "challenge")
        if not _SERIAL.fullmatch(self.card):
            self.refuse("card is the auth certificate's serial in lower-case hex", "card")
        if len(self.face_image_sha256) != 32:
            self.refuse("face_image_sha256 is 32 bytes", "face_image_sha256")
        if self.checked_at.tzinfo is None or self.checked_at.microsecond:
            self.refuse("checked_at is a UTC time in whole seconds", "checked_at")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "app": self.app, "challenge": b64(self.challenge),
                "card": self.card, "face_image_sha256": b64(self.face_image_sha256),
                "matched": self.matched,
                "checked_at": self.checked_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}

    @classmethod
    def parse(cls, data: bytes | Mapping[str, Any]) -> Self:
        m = cls.members(data, ("app", "challenge", "card", "face_image_sha256", "matched",
                               "checked_at"))
        text = m.text("checked_at", 20)
        try:
            at = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError as exc:
            raise PinResetError("checked_at is YYYY-MM-DDTHH:MM:SSZ",
                                field="checked_at") from exc
        return cls(app=m.text("app", 40), challenge=m.base64("challenge", 64),
                   card=m.text("card", 40), face_image_sha256=m.base64("face_image_sha256", 64),
                   matched=m.flag("matched"), checked_at=at)
