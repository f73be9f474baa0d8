"""The JPKI application's fixed layout: its AID, elementary files, PINs, keys and token labels.

Shared by the client and the emulator so that both speak of the same files. Everything here is
reference §4.2–§4.5.
"""

from __future__ import annotations

from enum import Enum, IntEnum

# reference §4.2: 公的個人認証AP.
JPKI_AP_AID = bytes.fromhex("D392F000260100000001")

# reference §4.1: the real contact ATR, which OpenSC's jpki driver also matches. T=1 only, no
# historical bytes; XOR check byte 14.
JPKI_ATR = bytes.fromhex("3BE000FF8131FE4514")

# reference §2, §4.3 (EF 0006): the token label tells a card from a phone.
# (S105: labels, not passwords.)
TOKEN_LABEL_CARD = "JPKIAPICCTOKEN2"  # noqa: S105
TOKEN_LABEL_ANDROID = "JPKIAPGPSETOKEN"  # noqa: S105
TOKEN_LABEL_IOS = "JPKIAPIOSTOKEN"  # noqa: S105
TOKEN_LABEL_LENGTH = 32  # first 32 bytes of EF 0006, space padded

# reference §4.3 (EF 0008): this byte in position 0 (sign) or 1 (auth) = certificate present.
CERTIFICATE_PRESENT = 0x8F


class Ef(IntEnum):
    """Elementary files of JPKI-AP (reference §4.3)."""

    SIGN_CERT = 0x0001
    SIGN_CA_CERT = 0x0002
    TOKEN_INFO = 0x0006
    AVAILABILITY = 0x0008
    AUTH_CERT = 0x000A
    AUTH_CA_CERT = 0x000B
    AUTH_KEY = 0x0017
    AUTH_PIN = 0x0018
    SIGN_KEY = 0x001A
    SIGN_PIN = 0x001B

    @property
    def sfi(self) -> int:
        """Short EF identifier: on JPKI-AP the FID's low five bits (e.g. 80|17 names 0017)."""
        return self.value & 0x1F


class CertSlot(IntEnum):
    """The certificate EFs (reference §4.3); the signing certificate needs the sign PIN."""

    SIGN = Ef.SIGN_CERT
    SIGN_CA = Ef.SIGN_CA_CERT
    AUTH = Ef.AUTH_CERT
    AUTH_CA = Ef.AUTH_CA_CERT


class Pin(IntEnum):
    """The two PINs, named by their EF (the VERIFY target, reference §4.3)."""

    AUTH = Ef.AUTH_PIN  # 利用者証明用暗証番号: 4 digits, 3 tries
    SIGN = Ef.SIGN_PIN  # 署名用パスワード: 6–16 of A–Z0–9, 5 tries

    @property
    def max_tries(self) -> int:
        # reference §4.5 (OpenSC JPKI_AUTH_PIN_MAX_TRIES 3, JPKI_SIGN_PIN_MAX_TRIES 5).
        return 3 if self is Pin.AUTH else 5

    @property
    def key(self) -> Key:
        return Key.AUTH if self is Pin.AUTH else Key.SIGN


class Key(IntEnum):
    """The two private keys, named by their EF; each is usable after its own PIN."""

    AUTH = Ef.AUTH_KEY
    SIGN = Ef.SIGN_KEY

    @property
    def pin(self) -> Pin:
        return Pin.AUTH if self is Key.AUTH else Pin.SIGN


class SignScheme(IntEnum):
    """P1 of COMPUTE DIGITAL SIGNATURE ``80 2A`` (reference §4.4 "方式種別"; others 6A86)."""

    PKCS1_AS_GIVEN = 0x00  # PKCS#1 v1.5 over the data as given (give a DigestInfo): the classic
    PKCS1_SHA256_BARE = 0x01  # card hashes with SHA-256, pads the bare hash
    PKCS1_PREHASHED_SHA256 = 0x02  # data is a SHA-256 hash; the card wraps it in a DigestInfo
    PKCS1_SHA256 = 0x03  # card hashes, wraps in a DigestInfo, pads
    PSS_PREHASHED_SHA256 = 0x04  # data is a SHA-256 hash; RSASSA-PSS
    PSS_SHA256 = 0x05  # card hashes; RSASSA-PSS

    @property
    def hashes_on_card(self) -> bool:
        return self in (SignScheme.PKCS1_SHA256_BARE, SignScheme.PKCS1_SHA256,
                        SignScheme.PSS_SHA256)


class TokenKind(Enum):
    """What answers as JPKI-AP, from the token label (reference §2)."""

    CARD = TOKEN_LABEL_CARD
    ANDROID = TOKEN_LABEL_ANDROID
    IOS = TOKEN_LABEL_IOS


# reference §4.4: SHA-256 DigestInfo prefix (followed by the 32-byte hash).
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300D060960864801650304020105000420")
# The P1 00 limit: what PKCS#1 v1.5 leaves for the payload under RSA-2048 (k − 11).
PKCS1_MAX_PAYLOAD = 245


def sha256_digest_info(digest: bytes) -> bytes:
    if len(digest) != 32:
        raise ValueError("a SHA-256 digest is 32 bytes")
    return SHA256_DIGEST_INFO_PREFIX + digest


def sign_input_length_ok(scheme: SignScheme, length: int) -> bool:
    """Whether the card accepts this much data for the scheme (else it answers 6700)."""
    if scheme in (SignScheme.PKCS1_PREHASHED_SHA256, SignScheme.PSS_PREHASHED_SHA256):
        return length == 32
    if scheme is SignScheme.PKCS1_AS_GIVEN:
        return 1 <= length <= PKCS1_MAX_PAYLOAD
    return length >= 1
