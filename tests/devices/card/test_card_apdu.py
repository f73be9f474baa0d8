"""The ISO/IEC 7816-4 APDU codec: the four cases, short and extended, and strict parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.card.apdu import (
    SW_OK,
    SW_WRONG_LENGTH,
    CommandApdu,
    ResponseApdu,
)
from devices.card.errors import ApduFormatError


class TestEncode:
    @pytest.mark.parametrize(("apdu", "expected"), [
        # case 1
        (CommandApdu(0x00, 0x20, 0x00, 0x80), "00200080"),
        # case 2 short; Le 256 is sent as 00 (reference §4.4 READ BINARY "Le=00 → 256")
        (CommandApdu(0x00, 0xB0, 0x00, 0x00, le=4), "00B0000004"),
        (CommandApdu(0x00, 0xB0, 0x00, 0x00, le=256), "00B0000000"),
        # case 3 short: the SELECT AP vector of reference §4.4
        (CommandApdu(0x00, 0xA4, 0x04, 0x0C, bytes.fromhex("D392F000260100000001")),
         "00A4040C0AD392F000260100000001"),
        # case 4 short: the classic signature command, Le 00
        (CommandApdu(0x80, 0x2A, 0x00, 0x80, b"\x01\x02", le=256), "802A0080020102" "00"),
        # case 2 extended
        (CommandApdu(0x00, 0xB0, 0x00, 0x00, le=257), "00B00000000101"),
        (CommandApdu(0x00, 0xB0, 0x00, 0x00, le=65536), "00B00000000000"),
        # case 3 extended: 256 bytes of data
        (CommandApdu(0x00, 0x82, 0x00, 0x00, bytes(256)), "00820000000100" + "00" * 256),
        # case 4 extended: data > 255 or Le > 256 makes both fields extended
        (CommandApdu(0x00, 0x2A, 0x00, 0x00, b"\xAA", le=300), "002A00000000" "01" "AA" "012C"),
        (CommandApdu(0x00, 0x2A, 0x00, 0x00, bytes(256), le=256),
         "002A0000000100" + "00" * 256 + "0100"),
        (CommandApdu(0x00, 0x2A, 0x00, 0x00, b"\xAA", le=65536), "002A0000000001AA0000"),
    ])
    def test_encodes_each_case(self, apdu: CommandApdu, expected: str) -> None:
        assert apdu.encode().hex().upper() == expected
        assert CommandApdu.parse(apdu.encode()) == apdu

    def test_case_numbers(self) -> None:
        assert CommandApdu(0, 0xA4, 0, 0).case == 1
        assert CommandApdu(0, 0xA4, 0, 0, le=1).case == 2
        assert CommandApdu(0, 0xA4, 0, 0, b"x").case == 3
        assert CommandApdu(0, 0xA4, 0, 0, b"x", le=1).case == 4

    @pytest.mark.parametrize("kwargs", [
        {"cla": 256}, {"ins": -1}, {"p1": 0x100}, {"le": 0}, {"le": 65537},
        {"data": bytes(65536)},
    ])
    def test_refuses_impossible_values(self, kwargs: dict[str, object]) -> None:
        fields: dict[str, object] = {"cla": 0, "ins": 0xB0, "p1": 0, "p2": 0}
        fields.update(kwargs)
        with pytest.raises(ValueError):
            CommandApdu(**fields)  # type: ignore[arg-type]

    def test_repr_never_shows_data(self) -> None:
        # VERIFY data is a PIN.
        text = repr(CommandApdu(0x00, 0x20, 0x00, 0x80, b"1234"))
        assert "1234" not in text and "31323334" not in text.upper()


class TestParse:
    @pytest.mark.parametrize(("raw", "cla", "data", "le"), [
        ("00A4040C", 0x00, b"", None),
        ("00B0000000", 0x00, b"", 256),
        ("00B00000FF", 0x00, b"", 255),
        ("00A4020C02001B", 0x00, b"\x00\x1B", None),
        ("802A00800201020A", 0x80, b"\x01\x02", 10),
        ("00B00000000000", 0x00, b"", 65536),
        ("00B00000000005", 0x00, b"", 5),
        # extended encodings of small values are legal and mean the same
        ("00A4020C000002001B", 0x00, b"\x00\x1B", None),
        ("802A0080000002010200FF", 0x80, b"\x01\x02", 255),
        ("802A0080000002010200 00".replace(" ", ""), 0x80, b"\x01\x02", 65536),
    ])
    def test_parses_each_case(self, raw: str, cla: int, data: bytes, le: int | None) -> None:
        apdu = CommandApdu.parse(bytes.fromhex(raw))
        assert (apdu.cla, apdu.data, apdu.le) == (cla, data, le)

    @pytest.mark.parametrize("raw", [
        "",  # nothing
        "00",
        "00A404",  # truncated header
        "00A4040C00FF",  # 00 then one byte: neither short nor extended
        "00A4040C0AD392F00026010000",  # Lc 10, 8 data bytes: truncated
        "00A4040C02001B0000",  # Lc 2, then two bytes: trailing byte after a short Le
        "00A4040C02001B00000000",  # Lc 2 and far too much
        "00A4040C0000",  # 00 00 then nothing: extended Lc of 0
        "00A4040C000000AA",  # extended Lc 0 followed by data
        "00A4040C000003AABB",  # extended Lc 3, 2 data bytes
        "00A4040C000002AABB00",  # extended Lc 2, then a 1-byte Le: not extended
        "00A4040C000002AABB000000",  # extended Lc 2, then 3 bytes
    ])
    def test_malformed_is_wrong_length(self, raw: str) -> None:
        with pytest.raises(ApduFormatError) as caught:
            CommandApdu.parse(bytes.fromhex(raw))
        assert caught.value.sw == SW_WRONG_LENGTH
        assert caught.value.context["sw"] == "6700"


class TestResponse:
    def test_round_trip(self) -> None:
        response = ResponseApdu.parse(bytes.fromhex("0102039000"))
        assert response.data == b"\x01\x02\x03" and response.sw == SW_OK and response.ok
        assert response.encode().hex() == "0102039000"
        assert ResponseApdu.of(0x63C2).encode() == b"\x63\xc2"

    def test_needs_a_status_word(self) -> None:
        with pytest.raises(ApduFormatError):
            ResponseApdu.parse(b"\x90")


commands = st.builds(
    CommandApdu,
    cla=st.integers(0, 255), ins=st.integers(0, 255), p1=st.integers(0, 255),
    p2=st.integers(0, 255),
    # Long data is built, not drawn byte by byte: drawing 64 KiB is too slow for hypothesis.
    data=st.one_of(st.binary(max_size=300),
                   st.builds(lambda n, b: bytes((b,)) * n, st.integers(256, 65535),
                             st.integers(0, 255))),
    le=st.one_of(st.none(), st.integers(1, 65536), st.sampled_from([1, 255, 256, 257, 65536])),
)


@given(commands)
def test_round_trip(apdu: CommandApdu) -> None:
    encoded = apdu.encode()
    assert CommandApdu.parse(encoded) == apdu
    assert len(encoded) <= 4 + 3 + 65535 + 2


@given(st.binary(max_size=600))
def test_parse_accepts_or_refuses_with_6700(raw: bytes) -> None:
    try:
        apdu = CommandApdu.parse(raw)
    except ApduFormatError as exc:
        assert exc.sw == SW_WRONG_LENGTH
        return
    # What parses re-encodes to something that parses to the same command.
    assert CommandApdu.parse(apdu.encode()) == apdu
