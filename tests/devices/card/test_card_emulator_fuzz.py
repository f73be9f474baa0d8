"""Fuzzing the emulator's APDU processing: arbitrary bytes and mutated valid APDUs.

Whatever arrives, the card answers with something that ends in a status word, never raises, and
leaves its state file byte-for-byte unchanged unless the command was a valid state-changing one
(VERIFY, CHANGE PIN, GENERATE, UPDATE BINARY, RESET RETRY COUNTER answered 90 00 or 63Cx).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.card.emulator import CardState, JpkiCardEmulator
from tests.devices.card.conftest import AUTH_PIN, FACE_PIN, SIGN_PASSWORD

STATE_CHANGING_INS = {0x20, 0x24, 0x47, 0xD6, 0x2C}

VALID = [bytes.fromhex(h) for h in (
    "00A4040C0AD392F000260100000001",  # SELECT AP
    "00A4020C020018", "00A4020C02001B", "00A4020C020017", "00A4020C02001A",
    "00A4020C020001", "00A4020C02000A", "00A4020C020006", "00A4020C020008",
    "00B0000004", "00B0000000", "00B08A0000", "00B0000100",
    "00200080", "0020008004" + AUTH_PIN.encode().hex(),
    "0020009B" + f"{len(SIGN_PASSWORD):02X}" + SIGN_PASSWORD.encode().hex(),
    "0020008004" + b"0000".hex(),
    "00240180" "04" + b"5678".hex(),
    "802A00800401020304" "00", "802A039704" "01020304" "00", "802A0297" "20" + "11" * 32 + "00",
    "0084000020", "00820000000100" + "00" * 256,
    "0047000006B6048402001700", "00D60000038F8F00", "002C029804" + b"1234".hex(),
    "00C0000000", "00CA5F5100", "80FC0000", "00880000020102" "00",
    # The 券面 applications (reference §4.6).
    "00A4040C0AD3921000310001010408", "00A4040C0AD3921000310001010402",
    "00A4020C020011", "00A4020C020014", "00A4020C020012", "00A4020C020001",
    "00A4020C020002", "00B0811100", "00B0000007", "0020008004" + FACE_PIN.encode().hex(),
    "0020009404" + b"0000".hex(), "00240180" "04" + b"1357".hex(), "002C039100",
    "00D6000003FF100C",
)]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    apdu = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "append", "insert", "delete"]))
        if kind in ("flip", "set", "delete") and apdu:
            index = draw(st.integers(0, len(apdu) - 1))
            if kind == "flip":
                apdu[index] ^= 1 << draw(st.integers(0, 7))
            elif kind == "set":
                apdu[index] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
            else:
                del apdu[index]
        elif kind == "truncate":
            del apdu[draw(st.integers(0, len(apdu))):]
        elif kind == "append":
            apdu += draw(st.binary(min_size=1, max_size=4))
        elif kind == "insert":
            apdu.insert(draw(st.integers(0, len(apdu))), draw(st.integers(0, 255)))
    return bytes(apdu)


apdus = st.one_of(st.binary(max_size=300), mutated(), st.sampled_from(VALID))


# Session prefixes that reach the states behind a PIN: JPKI-AP selected, auth PIN verified, the
# auth key current; or the 券面事項入力補助AP selected, its PIN verified, EF 0001 current.
PREPARED = {
    "jpki": [bytes.fromhex(h) for h in (
        "00A4040C0AD392F000260100000001", "00A4020C020018",
        "0020008004" + AUTH_PIN.encode().hex(), "00A4020C020017")],
    "text": [bytes.fromhex(h) for h in (
        "00A4040C0AD3921000310001010408", "00A4020C020011",
        "0020008004" + FACE_PIN.encode().hex(), "00A4020C020001")],
}


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(prepared=st.sampled_from([None, "jpki", "text"]),
       sequence=st.lists(apdus, min_size=1, max_size=12))
def test_any_input_gets_a_status_word_and_only_valid_commands_change_state(
        issued_template: Path, prepared: str | None, sequence: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "card.json"
        shutil.copy(issued_template, path)  # JPKI-AP personalised, the 券面 APs issued
        emulator = JpkiCardEmulator.open(path)
        if prepared is not None:
            assert [emulator.process(apdu) for apdu in PREPARED[prepared]] == [b"\x90\x00"] * 4
        for apdu in sequence:
            before = path.read_bytes()
            response = emulator.process(apdu)
            assert len(response) >= 2
            sw1, sw2 = response[-2], response[-1]
            assert sw1 in (0x90, 0x61) or 0x62 <= sw1 <= 0x6F, response.hex()
            if sw1 == 0x90:
                assert sw2 == 0x00
            after = path.read_bytes()
            if after != before:
                assert len(apdu) >= 4 and apdu[1] in STATE_CHANGING_INS, apdu.hex()
                assert sw1 == 0x90 or (sw1 == 0x63 and sw2 & 0xF0 == 0xC0), response.hex()
                # The file says what the card now is.
                assert CardState.load(path) == emulator.state
            # Nothing of the session reaches the file.
            assert b"issuer" not in after.replace(b"issuer_public_key", b"")
