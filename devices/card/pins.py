"""PIN formats of JPKI-AP (reference §4.5), shared by the client and the emulator.

- 利用者証明用 (auth) PIN: exactly 4 digits.
- 署名用パスワード (sign password): 6–16 characters of A–Z and 0–9, with at least one letter and
  at least one digit. Clients upper-case what the holder typed before sending it (MYNA
  ``to_uppercase``; reference §4.4 VERIFY row), so "abc123" and "ABC123" are the same
  password.

The client refuses a malformed PIN before it reaches the card (no try is spent on a typo the
format already rules out). The emulator accepts any bytes in VERIFY — a real card only compares —
but refuses a malformed *new* PIN in CHANGE PIN and RESET RETRY COUNTER with 6A80.
"""

from __future__ import annotations

import re

from devices.card.errors import InvalidPinFormat
from devices.card.jpki_ap import Pin

AUTH_PIN_LENGTH = 4
SIGN_PASSWORD_MIN = 6
SIGN_PASSWORD_MAX = 16
MAX_PIN_BYTES = SIGN_PASSWORD_MAX

_AUTH = re.compile(rb"[0-9]{4}")
_SIGN = re.compile(rb"(?=[A-Z0-9]*[A-Z])(?=[A-Z0-9]*[0-9])[A-Z0-9]{6,16}")


def is_well_formed(pin: Pin, value: bytes) -> bool:
    """Whether ``value`` (as sent to the card) is a valid PIN of this kind."""
    pattern = _AUTH if pin is Pin.AUTH else _SIGN
    return pattern.fullmatch(value) is not None


def encode_pin(pin: Pin, value: str) -> bytes:
    """The bytes a client sends for ``value``: ASCII, the sign password upper-cased.

    Raises :class:`InvalidPinFormat` naming the rule, never echoing the value.
    """
    # Only ASCII may be upper-cased: str.upper() maps some non-ASCII letters to ASCII ones
    # ("ﬀ" → "FF"), which would turn a typo into a different, valid password.
    if not value.isascii():
        raise InvalidPinFormat(f"{_name(pin)}: only ASCII letters and digits are allowed")
    raw = (value.upper() if pin is Pin.SIGN else value).encode("ascii")
    if not is_well_formed(pin, raw):
        raise InvalidPinFormat(f"{_name(pin)}: {_rule(pin)}")
    return raw


def _name(pin: Pin) -> str:
    return "auth PIN" if pin is Pin.AUTH else "sign password"


def _rule(pin: Pin) -> str:
    if pin is Pin.AUTH:
        return f"exactly {AUTH_PIN_LENGTH} digits"
    return (f"{SIGN_PASSWORD_MIN}–{SIGN_PASSWORD_MAX} characters of A–Z and 0–9 with at least "
            "one letter and one digit")
