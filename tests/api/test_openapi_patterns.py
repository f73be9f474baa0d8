"""The patterns the OpenAPI document states are the rules the service applies: a client that
sends what the document allows is not refused for its form, and what it refuses is refused.

The service checks these itself (serial numbers: jpki.serials; municipality codes:
jpki.municipalities; signed documents: base64 then CMS), with errors of its own; the document
(api.request_fields.Documented) states the same rule as a pattern.
"""

from __future__ import annotations

import base64
import binascii
import re

from hypothesis import example, given
from hypothesis import strategies as st

from api.request_fields import BASE64_PATTERN, PREFECTURE_PATTERN, SERIAL_PATTERN
from jpki.errors import InvalidSerial
from jpki.municipalities import PREFECTURES
from jpki.serials import parse_serial

# JSON Schema patterns are ECMA-262 regular expressions, in which "$" is the end of the text; in
# Python's it also matches before a final line feed, so whole-text matches are fullmatch here.
SERIAL = re.compile(SERIAL_PATTERN)
BASE64 = re.compile(BASE64_PATTERN)


def accepted(text: str) -> bool:
    try:
        parse_serial(text)
    except InvalidSerial:
        return False
    return True


# Strings made of what serials are made of, and of what they are not.
serial_like = st.text(alphabet=" :0x1X9aFg\n\t", max_size=60) | st.builds(
    lambda pre, body, post: pre + body + post, st.sampled_from(["", " ", "0x", "0X", ":"]),
    st.text(alphabet="0:f ", min_size=1, max_size=130), st.sampled_from(["", " ", ":", "\n"]))


@given(serial_like)
@example("0")
@example("00:00")
@example("0x")
@example("1" * 40)
@example("1" * 41)
@example("0" * 60 + "1" * 40)
@example("0" * 60 + "1" * 41)
@example("00x1")
@example(":0x1")
@example(" 0x 1 ")
@example("0 x1")
@example("ab:CD:0f")
def test_the_serial_pattern_is_parse_serials_rule(text: str) -> None:
    # Within the length the document also states (maxLength 128 in a path, 64 in a body).
    if len(text) <= 128:
        assert bool(SERIAL.fullmatch(text)) == accepted(text), text


@given(st.from_regex(SERIAL, fullmatch=True).filter(lambda s: len(s) <= 128))
def test_every_serial_the_pattern_allows_is_accepted(text: str) -> None:
    assert accepted(text), text


@given(st.binary(max_size=100))
def test_canonical_base64_matches_the_pattern(data: bytes) -> None:
    assert BASE64.fullmatch(base64.b64encode(data).decode())


@given(st.from_regex(BASE64, fullmatch=True) | st.text(alphabet="AZaz09+/=-_ \n", max_size=40))
@example("AAA")
@example("AA=")
@example("A===")
def test_what_the_base64_pattern_allows_decodes(text: str) -> None:
    if BASE64.fullmatch(text):
        base64.b64decode(text, validate=True)  # raises if not
    else:
        # The service is more lenient about padding only; the document asks for canonical.
        try:
            decoded = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return
        assert base64.b64encode(decoded).decode() != text, text


def test_the_prefecture_pattern_is_the_prefecture_table() -> None:
    pattern = re.compile(PREFECTURE_PATTERN)
    for first in range(100):
        code = f"{first:02d}0000"
        assert bool(pattern.fullmatch(code)) == (code[:2] in PREFECTURES), code
