"""What a phone sends the CA about its mobile certificates (reference §2), as both sides read it.

Four documents, each signed as a CMS SignedData (jpki.protocol.cms) and posted to
``/v1/mobile/...`` with a challenge the CA issued for its purpose:

- :class:`MobileApplication` — signed by the **card's** signing key: the new device, its
  platform, the two public keys made in its secure element and a proof of possession of each;
- :class:`MobileRevocation`, :class:`MobileCheckIn` and :class:`MobileSuspensionLift` — a
  holder's requests about a device the CA enrolled, signed by the device's mobile auth key (or
  the card's signing key).

The proof of possession (:func:`pop_message`) is what the phone signs with each new key. What is
*checked* against the CA's records — the signer, the challenge, the keys' strength, the proofs —
is the CA's (jpki.mobile.service); a document here is only well formed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Self

from jpki.errors import InvalidInput
from jpki.protocol.documents import MAX_TEXT, Document, b64, one_of


class MobileError(InvalidInput):
    code = "mobile.invalid"
    title = "The mobile request is invalid"


class MobileKind(StrEnum):
    """The two mobile certificates, by the names the CA gives their kinds on the wire (the values
    of jpki.model.CertKind, which the CA maps them to)."""

    SIGN = "mobile_sign"  # 移動端末設備用署名用電子証明書
    AUTH = "mobile_auth"  # 移動端末設備用利用者証明用電子証明書

    @property
    def is_signing(self) -> bool:
        return self is MobileKind.SIGN


class Platform(StrEnum):
    """The token label of the phone's JPKI-AP (reference §2)."""

    ANDROID = "JPKIAPGPSETOKEN"  # a GlobalPlatform secure element
    IOS = "JPKIAPIOSTOKEN"


class ChallengePurpose(StrEnum):
    """What a challenge may be used for: each document names its own."""

    APPLICATION = "application"
    REVOCATION = "revocation"
    LIFT = "lift"
    CHECK_IN = "check_in"


class DeviceRevocationReason(StrEnum):
    """Why a holder revokes a device's certificates (reference §2)."""

    DEVICE_CHANGE = "device_change"
    SALE = "sale"
    DISPOSAL = "disposal"


POP_DOMAIN = b"jpki-mobile-pop\x00"
MAX_CHALLENGE = 96  # bytes; the CA issues 32
MAX_DEVICE_REF = 128  # characters of the phone's own name for itself
MAX_KEY = 6144  # bytes of a public key or a proof (what MAX_TEXT characters of base64 hold)
_SERIAL = re.compile(r"[0-9A-Fa-f]{1,40}")  # RFC 5280 §4.1.2.2: at most 20 octets


def pop_message(challenge: bytes, device_ref: str, kind: MobileKind) -> bytes:
    """What a phone signs with each new key: the challenge, its device and the kind, so a proof
    can be replayed neither in another application nor for the other certificate."""
    return b"\x00".join([POP_DOMAIN, challenge, device_ref.encode("utf-8"),
                         MobileKind(kind).value.encode("ascii")])


def _check_challenge(doc: Document, challenge: bytes) -> None:
    if not 1 <= len(challenge) <= MAX_CHALLENGE:
        doc.refuse(f"challenge is 1 to {MAX_CHALLENGE} bytes", "challenge")


def _check_key(doc: Document, value: bytes, field: str) -> None:
    # Only the size: whether it is a key the CA certifies, or a proof that verifies, is the CA's.
    if len(value) > MAX_KEY:
        doc.refuse(f"{field} is at most {MAX_KEY} bytes", field)


def _enum(doc: Document, field: str, kind: type[StrEnum]) -> None:
    # The enum, even if the caller gave its wire string.
    object.__setattr__(doc, field, one_of(doc, field, kind, getattr(doc, field)))


@dataclass(frozen=True)
class MobileApplication(Document):
    """The application for both mobile certificates, signed by the card's signing key."""

    TYPE: ClassVar[str] = "jpki-mobile-application/1"
    PURPOSE: ClassVar[ChallengePurpose] = ChallengePurpose.APPLICATION
    error: ClassVar[type[InvalidInput]] = MobileError

    challenge: bytes
    device: str  # the phone's name for itself (its device reference), 1-128 characters
    platform: Platform
    card_sign_serial: str  # the card signing certificate that signs, in hex
    sign_public_key: bytes  # SubjectPublicKeyInfo, DER
    auth_public_key: bytes
    sign_pop: bytes  # PKCS#1 v1.5 over pop_message(challenge, device, MobileKind.SIGN)
    auth_pop: bytes

    def __post_init__(self) -> None:
        _check_challenge(self, self.challenge)
        # Stored and shown as it is: printable text, which any database can hold.
        if not 1 <= len(self.device) <= MAX_DEVICE_REF or any(
                unicodedata.category(c) in ("Cc", "Cs") for c in self.device):
            self.refuse(f"device is 1 to {MAX_DEVICE_REF} characters, none of them a control "
                        "character", "device")
        _enum(self, "platform", Platform)
        if not _SERIAL.fullmatch(self.card_sign_serial):
            self.refuse("card_sign_serial is a certificate serial number in hex",
                        "card_sign_serial")
        for field in ("sign_public_key", "auth_public_key", "sign_pop", "auth_pop"):
            _check_key(self, getattr(self, field), field)

    def public_key(self, kind: MobileKind) -> bytes:
        return self.sign_public_key if kind.is_signing else self.auth_public_key

    def pop(self, kind: MobileKind) -> bytes:
        return self.sign_pop if kind.is_signing else self.auth_pop

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "challenge": b64(self.challenge), "device": self.device,
                "platform": self.platform.value, "card_sign_serial": self.card_sign_serial,
                "sign_public_key": b64(self.sign_public_key),
                "auth_public_key": b64(self.auth_public_key),
                "sign_pop": b64(self.sign_pop), "auth_pop": b64(self.auth_pop)}

    @classmethod
    def parse(cls, data: bytes | Mapping[str, Any]) -> Self:
        m = cls.members(data, ("challenge", "device", "platform", "card_sign_serial",
                               "sign_public_key", "auth_public_key", "sign_pop", "auth_pop"))
        return cls(challenge=m.base64("challenge"), device=m.text("device"),
                   platform=m.choice("platform", Platform),
                   card_sign_serial=m.text("card_sign_serial"),
                   sign_public_key=m.base64("sign_public_key"),
                   auth_public_key=m.base64("auth_public_key"),
                   sign_pop=m.base64("sign_pop"), auth_pop=m.base64("auth_pop"))


@dataclass(frozen=True)
class HolderRequest(Document):
    """A holder's request about a device the CA enrolled: the challenge for its purpose and the
    device's id, as the CA gave it. Any string is taken as the id: one the CA did not give names
    no device, which the CA says once it has checked who signed."""

    PURPOSE: ClassVar[ChallengePurpose]
    error: ClassVar[type[InvalidInput]] = MobileError

    challenge: bytes
    device: str

    def __post_init__(self) -> None:
        _check_challenge(self, self.challenge)
        if len(self.device) > MAX_TEXT:
            self.refuse(f"device is at most {MAX_TEXT} characters", "device")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "challenge": b64(self.challenge), "device": self.device}


@dataclass(frozen=True)
class MobileRevocation(HolderRequest):
    """Revoke the device's certificates (a change of device, a sale, a disposal)."""

    TYPE: ClassVar[str] = "jpki-mobile-revocation/1"
    PURPOSE: ClassVar[ChallengePurpose] = ChallengePurpose.REVOCATION

    reason: DeviceRevocationReason

    def __post_init__(self) -> None:
        super().__post_init__()
        _enum(self, "reason", DeviceRevocationReason)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "reason": self.reason.value}

    @classmethod
    def parse(cls, data: bytes | Mapping[str, Any]) -> Self:
        m = cls.members(data, ("challenge", "device", "reason"))
        return cls(challenge=m.base64("challenge"), device=m.text("device"),
                   reason=m.choice("reason", DeviceRevocationReason))


@dataclass(frozen=True)
class MobileCheckIn(HolderRequest):
    """The device's periodic sign of life, signed with its own auth key."""

    TYPE: ClassVar[str] = "jpki-mobile-check-in/1"
    PURPOSE: ClassVar[ChallengePurpose] = ChallengePurpose.CHECK_IN

    @classmethod
    def parse(cls, data: bytes | Mapping[str, Any]) -> Self:
        m = cls.members(data, ("challenge", "device"))
        return cls(challenge=m.base64("challenge"), device=m.text("device"))


@dataclass(frozen=True)
class MobileSuspensionLift(HolderRequest):
    """The lost phone was found: lift the hold, with a new signing key made in the phone and its
    proof of possession (pop_message over the device's reference, MobileKind.SIGN)."""

    TYPE: ClassVar[str] = "jpki-mobile-lift/1"
    PURPOSE: ClassVar[ChallengePurpose] = ChallengePurpose.LIFT

    sign_public_key: bytes
    sign_pop: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_key(self, self.sign_public_key, "sign_public_key")
        _check_key(self, self.sign_pop, "sign_pop")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "sign_public_key": b64(self.sign_public_key),
                "sign_pop": b64(self.sign_pop)}

    @classmethod
    def parse(cls, data: bytes | Mapping[str, Any]) -> Self:
        m = cls.members(data, ("challenge", "device", "sign_public_key", "sign_pop"))
        return cls(challenge=m.base64("challenge"), device=m.text("device"),
                   sign_public_key=m.base64("sign_public_key"), sign_pop=m.base64("sign_pop"))
