"""The little BER-TLV that the issuance commands need (ISO/IEC 7816-4 §5.2 / ISO/IEC 7816-8).

GENERATE ASYMMETRIC KEY PAIR names its key in a control reference template
(``B6 { 84 <key FID> }``) and answers with the public key as ``7F49 { 81 n, 82 e }``. Only
definite lengths up to three length bytes, one- or two-byte tags. Parsing is strict: a TLV that
runs past its container or leaves trailing bytes raises :class:`ValueError`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

TAG_PUBLIC_KEY = 0x7F49  # ISO/IEC 7816-8 public key data object
TAG_MODULUS = 0x81
TAG_EXPONENT = 0x82
TAG_CRT_DIGITAL_SIGNATURE = 0xB6  # control reference template for digital signature
TAG_PRIVATE_KEY_REFERENCE = 0x84


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    if length <= 0xFF:
        return bytes((0x81, length))
    if length <= 0xFFFF:
        return b"\x82" + length.to_bytes(2, "big")
    raise ValueError("TLV value too long")


def encode_tlv(tag: int, value: bytes) -> bytes:
    tag_bytes = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    return tag_bytes + encode_length(len(value)) + value


def parse_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """Split ``data`` into (tag, value) pairs; the whole of ``data`` must be consumed."""
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        tag = data[pos]
        pos += 1
        if tag & 0x1F == 0x1F:  # a two-byte tag (7F49); longer tags are not used here
            if pos >= len(data) or data[pos] & 0x80:
                raise ValueError("unsupported or truncated multi-byte tag")
            tag = tag << 8 | data[pos]
            pos += 1
        if pos >= len(data):
            raise ValueError("TLV without a length")
        first = data[pos]
        pos += 1
        if first < 0x80:
            length = first
        elif first in (0x81, 0x82):
            count = first & 0x7F
            if pos + count > len(data):
                raise ValueError("truncated TLV length")
            length = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        else:
            raise ValueError("unsupported TLV length form")
        if pos + length > len(data):
            raise ValueError("TLV value runs past its container")
        items.append((tag, data[pos:pos + length]))
        pos += length
    return items


def _unsigned(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def encode_rsa_public_key(key: rsa.RSAPublicKey) -> bytes:
    """``7F49 { 81 modulus, 82 public exponent }``, big-endian unsigned, no leading zeros."""
    numbers = key.public_numbers()
    inner = encode_tlv(TAG_MODULUS, _unsigned(numbers.n)) + encode_tlv(TAG_EXPONENT,
                                                                        _unsigned(numbers.e))
    return encode_tlv(TAG_PUBLIC_KEY, inner)


def decode_rsa_public_key(data: bytes) -> rsa.RSAPublicKey:
    """The inverse of :func:`encode_rsa_public_key`; :class:`ValueError` if anything is off."""
    outer = parse_tlvs(data)
    if len(outer) != 1 or outer[0][0] != TAG_PUBLIC_KEY:
        raise ValueError("expected exactly one 7F49 public key template")
    fields = dict(parse_tlvs(outer[0][1]))
    if set(fields) != {TAG_MODULUS, TAG_EXPONENT}:
        raise ValueError("a 7F49 template holds exactly 81 (modulus) and 82 (exponent)")
    n = int.from_bytes(fields[TAG_MODULUS], "big")
    e = int.from_bytes(fields[TAG_EXPONENT], "big")
    if n < 3 or e < 3 or e % 2 == 0:
        raise ValueError("not an RSA public key")
    return rsa.RSAPublicNumbers(e, n).public_key()


def encode_key_reference(fid: int) -> bytes:
    """The control reference template naming a private key EF: ``B6 04 84 02 <FID>``."""
    return encode_tlv(TAG_CRT_DIGITAL_SIGNATURE,
                      encode_tlv(TAG_PRIVATE_KEY_REFERENCE, fid.to_bytes(2, "big")))


def decode_key_reference(data: bytes) -> int:
    """The FID named by :func:`encode_key_reference`'s template; :class:`ValueError` otherwise."""
    outer = parse_tlvs(data)
    if len(outer) != 1 or outer[0][0] != TAG_CRT_DIGITAL_SIGNATURE:
        raise ValueError("expected exactly one B6 control reference template")
    inner = parse_tlvs(outer[0][1])
    if len(inner) != 1 or inner[0][0] != TAG_PRIVATE_KEY_REFERENCE or len(inner[0][1]) != 2:
        raise ValueError("the template names one key by a two-byte FID in tag 84")
    return int.from_bytes(inner[0][1], "big")


def object_length(data: bytes) -> int | None:
    """Total length (header and value) of the TLV ``data`` starts with; ``None`` when the
    header itself is not all there yet. :class:`ValueError` for a form :func:`parse_tlvs`
    refuses. Lets a client read a file's header first, then exactly the rest."""
    if not data:
        return None
    pos = 2 if data[0] & 0x1F == 0x1F else 1
    if len(data) <= pos:
        return None
    if pos == 2 and data[1] & 0x80:
        raise ValueError("unsupported multi-byte tag")
    first = data[pos]
    if first < 0x80:
        return pos + 1 + first
    if first not in (0x81, 0x82):
        raise ValueError("unsupported TLV length form")
    count = first & 0x7F
    if len(data) < pos + 1 + count:
        return None
    return pos + 1 + count + int.from_bytes(data[pos + 1:pos + 1 + count], "big")
