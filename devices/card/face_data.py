"""What the 券面 applications hold: building their files at card issuance, and reading them.

The layouts are reference §4.6 (MYNACARD's byte-for-byte reading of a card, with PYJPKI, AOKI and
the Rust ``myna`` tool reading the same tags). Where no public source gives the content, this
repository chose it, and reference §4.6 "This repository's choices" says so:

- the records are signed (RSA PKCS#1 v1.5, SHA-256) with the development **issuer key** — the one
  the card already trusts for EXTERNAL AUTHENTICATE — and carry its public key where a card
  carries its own (``DF12`` / ``DF24`` / ``DF42``); each signature covers the objects named below;
- the face image is a synthetic greyscale **PNG** drawn from a seed (a real card holds a JPEG 2000
  photograph); no real face is ever used;
- the name and address images are placeholders (a pattern per character, not legible glyphs);
  the individual number and security code images render the digits in a 3×5 pixel font.

Everything personal here — the holder's basic 4, the individual number, the security code —
stays out of reprs (architecture §9.7): :class:`CardSurface` and the parsed views redact
themselves.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import struct
import zlib
from dataclasses import dataclass, field
from datetime import date

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devices.card import face_aps, tlv
from devices.card.face_aps import DataFile

REDACTED = "<redacted>"

# Tags (reference §4.6).
TAG_MY_NUMBER = 0xFF10
TAG_BASIC4 = 0xFF20
TAG_INTEGRITY = 0xFF30
TAG_TEXT_AP_INFO = 0xFF40
TAG_AGE_RECORD = 0xFF10
TAG_CARD_FACE = 0xFF20
TAG_SURFACE_AP_INFO = 0xFF30
TAG_MY_NUMBER_IMAGE = 0xFF40
TAG_EXPONENT = 0x90
TAG_MODULUS = 0x91

MY_NUMBER_FILE_LENGTH = 17  # the TLV (15 bytes) and filler: clients read 17 bytes (reference §4.6)
FILLER = b"\xff"
TEXT_AP_LAYOUT = bytes.fromhex("01030E01")  # DF41 as observed (MYNACARD)
SURFACE_AP_LAYOUT = bytes.fromhex("06030E01")  # DF31 as observed (MYNACARD)
# A 16-byte key identifier shaped like the card's ("5000034" 08 05 "001" 00 00 00 00); ours
# start with 9, neither production (5) nor the J-LIS test hierarchy (6).
DEVELOPMENT_KEY_ID_TEXT = b"9000034\x08\x05001\x00\x00\x00\x00"
DEVELOPMENT_KEY_ID_SURFACE = b"9000024\x08\x05001\x00\x00\x00\x00"


# --- the data printed on (and stored in) a card ---------------------------------------------


@dataclass(frozen=True, repr=False)
class CardSurface:
    """What card issuance writes into the two applications. Never printed (§9.7)."""

    name: str
    address: str
    birth_date: date
    sex: int  # 1 male, 2 female, 3 other (reference §1.3, §4.6)
    expiry: date
    my_number: str
    security_code: str
    municipality_code: str  # 全国地方公共団体コード, 5 digits (reference §4.6, EF 0003)

    def __post_init__(self) -> None:
        if self.sex not in (1, 2, 3):
            raise ValueError("sex: must be 1, 2 or 3")
        if not face_aps.is_valid_my_number(self.my_number):
            raise ValueError("my_number: 12 digits with a valid check digit (reference §4.6)")
        if not (len(self.security_code) == 4 and self.security_code.isascii()
                and self.security_code.isdigit()):
            raise ValueError("security_code: 4 digits")
        if not (len(self.municipality_code) == 5 and self.municipality_code.isascii()
                and self.municipality_code.isdigit()):
            raise ValueError("municipality_code: 5 digits")
        if not self.name or not self.address:
            raise ValueError("name and address must not be empty")
        face_aps.era_birth_date(self.birth_date)  # refuses a date outside the eras

    @property
    def code_b(self) -> str:
        return face_aps.code_b(self.birth_date, self.expiry, self.security_code)

    @property
    def birth_key(self) -> str:
        return face_aps.era_birth_date(self.birth_date)

    def __repr__(self) -> str:
        return f"CardSurface({REDACTED})"

    __str__ = __repr__


def synthetic_my_number(rng: random.Random | None = None) -> str:
    """A random individual number with a valid check digit; synthetic, never a real holder's
    (it is drawn at random, not assigned)."""
    draw = rng.randrange if rng is not None else secrets.randbelow
    head = "".join(str(draw(10)) for _ in range(11))
    return head + str(face_aps.my_number_check_digit(head))


def synthetic_security_code(rng: random.Random | None = None) -> str:
    draw = rng.randrange if rng is not None else secrets.randbelow
    return "".join(str(draw(10)) for _ in range(4))


# --- images ----------------------------------------------------------------------------------


def png(width: int, height: int, rows: list[bytes], *, bit_depth: int = 8) -> bytes:
    """A greyscale PNG (colour type 0) from raw rows: the stdlib has no image library."""
    if len(rows) != height:
        raise ValueError("one row per line")

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 on every row
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _bitmap_png(pixels: list[list[bool]]) -> bytes:
    """A 1-bit PNG; ``True`` is ink (black)."""
    height, width = len(pixels), len(pixels[0])
    rows = []
    for line in pixels:
        bits = 0
        packed = bytearray()
        for x, ink in enumerate(line):
            bits = bits << 1 | (0 if ink else 1)
            if x % 8 == 7:
                packed.append(bits)
                bits = 0
        if width % 8:
            packed.append(bits << (8 - width % 8))
        rows.append(bytes(packed))
    return png(width, height, rows, bit_depth=1)


# A 3×5 digit font, one string of 15 bits per digit, row by row.
_DIGITS = ("111101101101111", "010110010010111", "111001111100111", "111001111001111",
           "101101111001001", "111100111001111", "111100111101111", "111001001001001",
           "111101111101111", "111101111001111")
CELL_WIDTH, CELL_HEIGHT = 8, 12  # each glyph doubled to 6×10, with a margin


def digits_png(digits: str) -> bytes:
    """The digits rendered in black on white, 8×12 pixels each."""
    pixels = [[False] * (CELL_WIDTH * len(digits)) for _ in range(CELL_HEIGHT)]
    for i, digit in enumerate(digits):
        glyph = _DIGITS[int(digit)]
        for gy in range(5):
            for gx in range(3):
                if glyph[gy * 3 + gx] == "1":
                    for dy in (0, 1):
                        for dx in (0, 1):
                            pixels[1 + gy * 2 + dy][i * CELL_WIDTH + 1 + gx * 2 + dx] = True
    return _bitmap_png(pixels)


def placeholder_text_png(text: str) -> bytes:
    """A 12-pixel-high 1-bit strip, one 12×12 cell per character, patterned from a hash of the
    character: stands where a card has the rendered text (reference §4.6, our choice)."""
    chars = text[:64] or " "
    pixels = [[False] * (12 * len(chars)) for _ in range(12)]
    for i, char in enumerate(chars):
        if char.isspace():
            continue
        bits = int.from_bytes(hashlib.sha256(char.encode("utf-8")).digest()[:13], "big")
        for y in range(1, 11):
            for x in range(1, 11):
                pixels[y][i * 12 + x] = bool(bits >> ((y - 1) * 10 + (x - 1)) & 1)
    return _bitmap_png(pixels)


FACE_WIDTH, FACE_HEIGHT = 96, 120


def synthetic_face_png(seed: bytes) -> bytes:
    """A deterministic greyscale head-and-shoulders silhouette, 96×120: no real face."""
    h = hashlib.sha256(b"jpki synthetic face " + seed).digest()
    background = 200 + h[0] % 48
    skin = 140 + h[1] % 60
    clothes = 40 + h[2] % 70
    head_rx, head_ry = 22 + h[3] % 7, 29 + h[4] % 7
    hair = 20 + h[5] % 50
    cx, cy = FACE_WIDTH // 2, 52
    rows = []
    for y in range(FACE_HEIGHT):
        row = bytearray()
        for x in range(FACE_WIDTH):
            value = background - y // 6
            if ((x - cx) / 46) ** 2 + ((y - 134) / 38) ** 2 <= 1:
                value = clothes
            if ((x - cx) / head_rx) ** 2 + ((y - cy) / head_ry) ** 2 <= 1:
                value = skin
                if y < cy - head_ry // 2:
                    value = hair
                elif y in (cy - 4, cy - 3) and abs(abs(x - cx) - head_rx // 2) <= 2:
                    value = 30  # eyes
                elif y == cy + head_ry // 2 and abs(x - cx) <= head_rx // 3:
                    value = skin - 50  # mouth
            row.append(max(0, min(255, value)))
        rows.append(bytes(row))
    return png(FACE_WIDTH, FACE_HEIGHT, rows)


# --- building the files ------------------------------------------------------------------------


def public_key_objects(key: rsa.RSAPublicKey) -> bytes:
    """``90 <e> 91 <n>``: how the 券面 applications store an RSA public key (reference §4.6)."""
    numbers = key.public_numbers()
    return (tlv.encode_tlv(TAG_EXPONENT, _unsigned(numbers.e))
            + tlv.encode_tlv(TAG_MODULUS, numbers.n.to_bytes((key.key_size + 7) // 8, "big")))


def _unsigned(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _sign(signer: rsa.RSAPrivateKey, data: bytes) -> bytes:
    return signer.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _with_offsets(tag: int, offsets_tag: int, fields: list[bytes]) -> bytes:
    """``tag { offsets_tag <2 bytes per field: its offset from the start of the file>, fields }``.

    The offsets depend on the outer header's length, which depends on the total: fixed point.
    """
    table_length = 3 + 2 * len(fields)  # DFxx, length byte, the offsets
    body_length = table_length + sum(len(f) for f in fields)
    header_length = len(tlv.encode_tlv(tag, bytes(body_length))) - body_length
    position = header_length + table_length
    offsets = bytearray()
    for item in fields:
        offsets += position.to_bytes(2, "big")
        position += len(item)
    return tlv.encode_tlv(tag, tlv.encode_tlv(offsets_tag, bytes(offsets)) + b"".join(fields))


def my_number_file(surface: CardSurface) -> bytes:
    raw = tlv.encode_tlv(TAG_MY_NUMBER, surface.my_number.encode("ascii"))
    return raw + FILLER * (MY_NUMBER_FILE_LENGTH - len(raw))


def basic4_file(surface: CardSurface) -> bytes:
    return _with_offsets(TAG_BASIC4, 0xDF21, [
        tlv.encode_tlv(0xDF22, surface.name.encode("utf-8")),
        tlv.encode_tlv(0xDF23, surface.address.encode("utf-8")),
        tlv.encode_tlv(0xDF24, surface.birth_date.strftime("%Y%m%d").encode("ascii")),
        tlv.encode_tlv(0xDF25, str(surface.sex).encode("ascii")),
    ])


def basic4_digest_source(raw: bytes) -> bytes:
    """What EF 0003's DF32 digests: the basic 4 file's outer value after the offset table."""
    tag, value, _end = first_object(raw)
    if tag != TAG_BASIC4:
        raise ValueError("not a basic 4 file")
    table_tag, _table, table_end = first_object(value)
    if table_tag != 0xDF21:
        raise ValueError("the offset table is not the first object")
    return value[table_end:]


def build_text_ap(surface: CardSurface, signer: rsa.RSAPrivateKey) -> dict[DataFile, bytes]:
    """The 券面事項入力補助AP's files (reference §4.6)."""
    number = my_number_file(surface)
    basic4 = basic4_file(surface)
    digests = (tlv.encode_tlv(0xDF31, hashlib.sha256(number).digest())
               + tlv.encode_tlv(0xDF32, hashlib.sha256(basic4_digest_source(basic4)).digest()))
    integrity = tlv.encode_tlv(TAG_INTEGRITY, digests + tlv.encode_tlv(0xDF33,
                                                                          _sign(signer, digests)))
    spki = signer.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    info = tlv.encode_tlv(TAG_TEXT_AP_INFO, tlv.encode_tlv(0xDF41, TEXT_AP_LAYOUT)
                          + tlv.encode_tlv(0xDF42, DEVELOPMENT_KEY_ID_TEXT)
                          + tlv.encode_tlv(0xDF43, hashlib.sha256(spki).digest()
                                           + FILLER * 96))
    return {face_aps.TEXT_MY_NUMBER: number, face_aps.TEXT_BASIC4: basic4,
            face_aps.TEXT_INTEGRITY: integrity, face_aps.TEXT_AP_INFO: info}


def _signed_record(tag: int, objects: bytes, signature_tag: int,
                   signer: rsa.RSAPrivateKey) -> bytes:
    return tlv.encode_tlv(tag, objects + tlv.encode_tlv(signature_tag, _sign(signer, objects)))


def build_surface_ap(surface: CardSurface, signer: rsa.RSAPrivateKey,
                     ) -> dict[DataFile, bytes]:
    """The 券面事項確認AP's files (reference §4.6)."""
    key = public_key_objects(signer.public_key())
    birth = surface.birth_date.strftime("%Y%m%d").encode("ascii")
    age = _signed_record(TAG_AGE_RECORD, tlv.encode_tlv(0xDF11, birth)
                         + tlv.encode_tlv(0xDF12, key), 0xDF13, signer)
    signed = [tlv.encode_tlv(0xDF22, birth),
              tlv.encode_tlv(0xDF23, str(surface.sex).encode("ascii")),
              tlv.encode_tlv(0xDF24, key),
              tlv.encode_tlv(0xDF25, placeholder_text_png(surface.name)),
              tlv.encode_tlv(0xDF26, placeholder_text_png(surface.address)),
              tlv.encode_tlv(0xDF27, synthetic_face_png(surface.my_number.encode("ascii")))]
    face = _with_offsets(TAG_CARD_FACE, 0xDF21, [
        *signed,
        tlv.encode_tlv(0xDF28, _sign(signer, b"".join(signed))),
        tlv.encode_tlv(0xDF29, surface.expiry.strftime("%Y%m%d").encode("ascii")),
        tlv.encode_tlv(0xDF2A, digits_png(surface.security_code)),
    ])
    info = tlv.encode_tlv(TAG_SURFACE_AP_INFO, tlv.encode_tlv(0xDF31, SURFACE_AP_LAYOUT)
                          + tlv.encode_tlv(0xDF32, DEVELOPMENT_KEY_ID_SURFACE)
                          + tlv.encode_tlv(0xDF33, b"\x01")
                          + tlv.encode_tlv(0xDF34, surface.municipality_code.encode("ascii"))
                          + tlv.encode_tlv(0xDF35, DEVELOPMENT_KEY_ID_SURFACE + FILLER * 256))
    number = _signed_record(TAG_MY_NUMBER_IMAGE, tlv.encode_tlv(0xDF41,
                                                                 digits_png(surface.my_number))
                            + tlv.encode_tlv(0xDF42, key), 0xDF43, signer)
    return {face_aps.SURFACE_AGE: age, face_aps.SURFACE_FACE: face,
            face_aps.SURFACE_AP_INFO: info, face_aps.SURFACE_MY_NUMBER: number}


# --- reading the files ------------------------------------------------------------------------


def first_object(data: bytes) -> tuple[int, bytes, int]:
    """The first BER-TLV of ``data`` (filler may follow): (tag, value, end offset)."""
    end = tlv.object_length(data)
    if end is None:
        raise ValueError("truncated TLV")
    [(tag, value)] = tlv.parse_tlvs(data[:end])
    return tag, value, end


def _fields(raw: bytes, tag: int) -> dict[int, bytes]:
    outer, value, _end = first_object(raw)
    if outer != tag:
        raise ValueError(f"expected tag {tag:04X}, got {outer:04X}")
    return dict(tlv.parse_tlvs(value))


def parse_my_number(raw: bytes) -> str:
    tag, value, _end = first_object(raw)
    if tag != TAG_MY_NUMBER or not face_aps.is_valid_my_number(value.decode("ascii", "replace")):
        raise ValueError("not an individual number file")
    return value.decode("ascii")


@dataclass(frozen=True, repr=False)
class Basic4Text:
    """The 券面事項入力補助AP's basic 4 (EF 0002). Never printed (§9.7)."""

    name: str
    address: str
    birth_date: date
    sex: int

    def __repr__(self) -> str:
        return f"Basic4Text({REDACTED})"

    __str__ = __repr__


def _date(raw: bytes) -> date:
    text = raw.decode("ascii")
    if len(text) != 8 or not text.isdigit():
        raise ValueError("a date is 8 digits YYYYMMDD")
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def parse_basic4(raw: bytes) -> Basic4Text:
    f = _fields(raw, TAG_BASIC4)
    return Basic4Text(name=f[0xDF22].decode("utf-8"), address=f[0xDF23].decode("utf-8"),
                      birth_date=_date(f[0xDF24]), sex=int(f[0xDF25].decode("ascii")))


@dataclass(frozen=True, repr=False)
class CardFace:
    """The 券面事項確認AP's card face (EF 0002). Never printed (§9.7)."""

    birth_date: date
    sex: int
    public_key: bytes
    name_image: bytes
    address_image: bytes
    photo: bytes
    signature: bytes
    expiry: date
    security_code_image: bytes
    signed_data: bytes = field(default=b"")

    def __repr__(self) -> str:
        return f"CardFace({REDACTED})"

    __str__ = __repr__

    def verify(self, key: rsa.RSAPublicKey) -> None:
        """Raises InvalidSignature unless ``key`` signed DF22–DF27 (our choice, §4.6)."""
        key.verify(self.signature, self.signed_data, padding.PKCS1v15(), hashes.SHA256())


def parse_card_face(raw: bytes) -> CardFace:
    tag, value, _end = first_object(raw)
    if tag != TAG_CARD_FACE:
        raise ValueError("not a card face file")
    items = tlv.parse_tlvs(value)
    f = dict(items)
    signed = b"".join(tlv.encode_tlv(t, v) for t, v in items if 0xDF22 <= t <= 0xDF27)
    return CardFace(birth_date=_date(f[0xDF22]), sex=int(f[0xDF23].decode("ascii")),
                    public_key=f[0xDF24], name_image=f[0xDF25], address_image=f[0xDF26],
                    photo=f[0xDF27], signature=f[0xDF28], expiry=_date(f[0xDF29]),
                    security_code_image=f[0xDF2A], signed_data=signed)


def parse_public_key(objects: bytes) -> rsa.RSAPublicKey:
    """The inverse of :func:`public_key_objects`."""
    f = dict(tlv.parse_tlvs(objects))
    return rsa.RSAPublicNumbers(int.from_bytes(f[TAG_EXPONENT], "big"),
                                int.from_bytes(f[TAG_MODULUS], "big")).public_key()
