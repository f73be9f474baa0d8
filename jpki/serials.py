"""Certificate serial numbers.

RFC 5280 §4.1.2.2: a positive integer of at most 20 octets. CA/B Forum practice (and the issue's
rule) asks for at least 64 bits from a CSPRNG; we take 127 random bits and require the value to be
at least 2**64, so every serial is 9–16 octets of DER and carries ≥ 64 bits of entropy. Uniqueness
is enforced by the database (unique index) before anything is signed.
"""

from __future__ import annotations

import secrets

from jpki.errors import InvalidSerial

_MIN = 1 << 64
_BITS = 127


def new_serial() -> int:
    while True:
        value = secrets.randbits(_BITS)
        if value >= _MIN:
            return value


def serial_hex(value: int) -> str:
    """The canonical text form: lower-case hex, no leading zeros (how the store keys serials)."""
    return format(value, "x")


# Room for 40 digits written with a separator between every two and a 0x; nothing needs more.
_MAX_TEXT = 128


def parse_serial(text: str) -> str:
    """Accept hex with or without 0x, colons or spaces, any case; return the canonical form.
    Nothing else: a line feed or a NUL is no part of a serial, however it is spelled. At most
    20 octets (RFC 5280 §4.1.2.2): 40 digits once leading zeros, which change no integer, are
    set aside — a rule a regular expression can state (api.request_fields.SERIAL_PATTERN)."""
    if len(text) > _MAX_TEXT:
        raise InvalidSerial("a serial is 1 to 40 hexadecimal digits")
    cleaned = text.strip(" ").lower().removeprefix("0x").replace(":", "").replace(" ", "")
    if not cleaned or len(cleaned.lstrip("0")) > 40 or \
            any(c not in "0123456789abcdef" for c in cleaned):
        raise InvalidSerial("a serial is 1 to 40 hexadecimal digits")
    value = int(cleaned, 16)
    if value <= 0:
        raise InvalidSerial("a serial is a positive integer")
    return serial_hex(value)
