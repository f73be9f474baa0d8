"""The few DER primitives the streaming CRL writer needs (X.690 §8.1.2–8.1.3).

Hand-written on purpose: no maintained library encodes a SEQUENCE whose contents are streamed
from a database cursor — asn1crypto and cryptography both need every element in memory first
(architecture §11: the cryptography builder takes 418 MiB for 10^6 entries). Everything else about a
CRL (names, extensions, times) is encoded by cryptography and asn1crypto. The certificate path
uses the same few primitives where a library object per element cost more than the element: the
assembled Certificate (jpki.signing) and the basic 4 otherNames' UTF8Strings (reference §1.3).
"""

from __future__ import annotations

from collections.abc import Iterator


def length(n: int) -> bytes:
    """Definite-form length octets."""
    if n < 0:
        raise ValueError("negative length")
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def header(tag: int, content_length: int) -> bytes:
    return bytes([tag]) + length(content_length)


SEQUENCE = 0x30
BIT_STRING = 0x03
UTF8_STRING = 0x0C


def utf8_string(value: str) -> bytes:
    """A UTF8String TLV (X.690 §8.23: the UTF-8 octets, primitive, definite length)."""
    octets = value.encode("utf-8")
    return header(UTF8_STRING, len(octets)) + octets


def read_tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the TLV at ``offset``; single-byte tags only."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[offset]
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0 or count > 8 or pos + count > len(data):
            raise ValueError("unsupported DER length")
        size = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    end = pos + size
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, pos, end


def children(data: bytes) -> Iterator[bytes]:
    """The encoded elements inside the single constructed TLV ``data``."""
    _, start, end = read_tlv(data, 0)
    pos = start
    while pos < end:
        _, _, child_end = read_tlv(data, pos)
        yield data[pos:child_end]
        pos = child_end
