"""The emulated 券面事項入力補助AP and 券面事項確認AP, APDU by APDU (reference §4.6).

Raw APDUs on purpose: these pin the bytes an independent reader sees. Every refusal is checked
for its status word and for leaving the card as it was — the state file byte for byte, and the
session (nothing newly verified, the current EF unchanged).
"""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devices.card import face_aps, face_data, tlv
from devices.card.client import JpkiCard
from devices.card.emulator import CardState, JpkiCardEmulator
from devices.card.errors import InvalidPinFormat, PinBlocked, SecurityStatusNotSatisfied, WrongPin
from devices.card.face_aps import FaceAp
from devices.card.face_client import FaceApClient, PinStatus, issue_face_aps, pin_status
from devices.card.jpki_ap import Pin
from devices.card.transport import InProcessTransport
from tests.devices.card.conftest import AUTH_PIN, FACE_PIN, SURFACE, EmulatedCard

SELECT_TEXT = "00A4040C0AD3921000310001010408"
SELECT_SURFACE = "00A4040C0AD3921000310001010402"
SELECT_JPKI = "00A4040C0AD392F000260100000001"
EMPTY_VERIFY = "00200080"


def select_ef(fid: int) -> str:
    return f"00A4020C02{fid:04X}"


def verify(value: str, p2: str = "80") -> str:
    raw = value.encode("ascii")
    return f"002000{p2}{len(raw):02X}{raw.hex()}"


def read(offset: int = 0, le: int = 0) -> str:
    return f"00B0{offset >> 8:02X}{offset & 0xFF:02X}{le % 256:02X}"


class Unchanged:
    """Asserts that a refused command left the card exactly as it was."""

    def __init__(self, card: EmulatedCard) -> None:
        self.card = card

    def __enter__(self) -> Unchanged:
        self.file = self.card.path.read_bytes()
        session = self.card.emulator.session
        self.session = (session.ap_selected, session.current_ef, set(session.verified),
                        session.face_ap, session.face_ef, set(session.face_verified),
                        session.issuer_authenticated)
        return self

    def __exit__(self, *exc: object) -> None:
        session = self.card.emulator.session
        assert self.card.path.read_bytes() == self.file
        assert (session.ap_selected, session.current_ef, set(session.verified),
                session.face_ap, session.face_ef, set(session.face_verified),
                session.issuer_authenticated) == self.session


# --- layout, check digit, 照合番号B -----------------------------------------------------------


class TestNumbers:
    def test_check_digit_of_a_number_read_from_a_card(self) -> None:
        # MYNACARD's test card (reference §4.6): the formula must accept it and nothing else.
        assert face_aps.is_valid_my_number("537686677188")
        assert [d for d in range(10) if face_aps.is_valid_my_number(f"53768667718{d}")] == [8]

    def test_remainders_0_and_1_give_check_digit_0(self) -> None:
        # Σ P_n·Q_n for "00000000001": P_1 = 1, Q_1 = 2 → 2 mod 11 = 2 → 9; for "00000000050":
        # P_2 = 5, Q_2 = 3 → 15 mod 11 = 4 → 7; "00000000000" → 0; "00000100000": P_6 = 1,
        # Q_6 = 7 → 7 → 4; "10000000000": P_11 = 1, Q_11 = 6 → 5; "00001000002": P_7 = 1 (Q 2)
        # + P_1 = 2 (Q 2) = 6 → 5. Remainder 1: "00000000006" → 12 mod 11 = 1 → 0.
        assert face_aps.my_number_check_digit("00000000001") == 9
        assert face_aps.my_number_check_digit("00000000050") == 7
        assert face_aps.my_number_check_digit("00000000000") == 0
        assert face_aps.my_number_check_digit("00000100000") == 4
        assert face_aps.my_number_check_digit("10000000000") == 5
        assert face_aps.my_number_check_digit("00001000002") == 5
        assert face_aps.my_number_check_digit("00000000006") == 0

    def test_synthetic_numbers_are_valid_and_refused_when_not(self) -> None:
        rng = random.Random(1)
        for _ in range(200):
            assert face_aps.is_valid_my_number(face_data.synthetic_my_number(rng))
        for bad in ("53768667718", "5376866771880", "53768667718X", "５３７６８６６７７１８８",
                    "537686677187"):
            assert not face_aps.is_valid_my_number(bad)
        with pytest.raises(ValueError):
            face_aps.my_number_check_digit("1234")

    def test_code_b_uses_the_era_year(self) -> None:
        # MYNACARD, confirmed on a card: 1980-02-17 (昭和55), expiry 2035, code 2285.
        assert face_aps.code_b(date(1980, 2, 17), date(2035, 2, 17), "2285") == \
            "55021720352285"
        assert face_aps.era_birth_date(date(2019, 5, 1)) == "010501"  # 令和元年
        assert face_aps.era_birth_date(date(2019, 4, 30)) == "310430"  # 平成31年
        assert face_aps.era_birth_date(date(1989, 1, 7)) == "640107"  # 昭和64年
        with pytest.raises(ValueError):
            face_aps.code_b(date(1980, 2, 17), date(2035, 2, 17), "228")

    def test_personal_data_never_in_reprs(self) -> None:
        text = repr(SURFACE) + str(SURFACE)
        for secret in (SURFACE.my_number, SURFACE.name, SURFACE.security_code, "1985"):
            assert secret not in text
        parsed = face_data.parse_basic4(face_data.basic4_file(SURFACE))
        assert SURFACE.name not in repr(parsed) and "1985" not in repr(parsed)


# --- selection -----------------------------------------------------------------------------------


class TestSelect:
    def test_the_three_applications_answer(self, issued_card: EmulatedCard) -> None:
        assert issued_card.sw(SELECT_TEXT) == "9000"
        assert issued_card.sw(SELECT_SURFACE) == "9000"
        assert issued_card.sw(SELECT_JPKI) == "9000"
        assert issued_card.sw("00A4040C0AD3921000310001010100") == "6A82"  # not emulated
        assert issued_card.sw("00A404000AD3921000310001010408") == "6A86"  # P2 00 (FCI)

    @pytest.mark.parametrize(("select", "present", "absent"), [
        (SELECT_TEXT, [0x0001, 0x0002, 0x0003, 0x0005, 0x0011, 0x0014, 0x0015],
         [0x0004, 0x0006, 0x0012, 0x0013, 0x0018, 0x000A, 0x3F00]),
        (SELECT_SURFACE, [0x0001, 0x0002, 0x0003, 0x0005, 0x0011, 0x0012, 0x0013],
         [0x0004, 0x0006, 0x0014, 0x0015, 0x001B, 0x0008]),
    ])
    def test_each_application_shows_its_own_files(self, issued_card: EmulatedCard, select: str,
                                                   present: list[int],
                                                   absent: list[int]) -> None:
        assert issued_card.sw(select) == "9000"
        for fid in present:
            assert issued_card.sw(select_ef(fid)) == "9000", hex(fid)
        for fid in absent:
            with Unchanged(issued_card):
                assert issued_card.sw(select_ef(fid)) == "6A82", hex(fid)

    def test_no_files_before_an_application(self, issued_card: EmulatedCard) -> None:
        with Unchanged(issued_card):
            assert issued_card.sw(select_ef(0x0011)) == "6A82"
            assert issued_card.sw(read(0, 4)) == "6986"
            assert issued_card.sw(EMPTY_VERIFY) == "6986"

    def test_another_application_clears_what_was_verified(self, issued_card: EmulatedCard,
                                                          ) -> None:
        card = issued_card
        assert card.sw(SELECT_TEXT) == "9000"
        assert card.sw(select_ef(0x0011)) == "9000"
        assert card.sw(verify(FACE_PIN)) == "9000"
        assert card.sw(SELECT_TEXT) == "9000"  # the same application again: still verified
        assert card.sw(select_ef(0x0001)) == "9000"
        assert card.sw(read(0, 17)).endswith("9000")
        assert card.sw(SELECT_JPKI) == "9000"
        assert card.sw(select_ef(0x0018)) == "9000"
        assert card.sw(verify(AUTH_PIN)) == "9000"
        assert card.sw(SELECT_TEXT) == "9000"
        assert card.sw(select_ef(0x0001)) == "9000"
        assert card.sw(read(0, 17)) == "6982"  # the detour cleared the text AP's PIN
        assert card.sw(SELECT_JPKI) == "9000"
        assert card.sw("802A00970401020304" "00") == "6982"  # and JPKI-AP's auth PIN


# --- PIN status: what an open-source reader does -------------------------------------------------


class TestPinStatus:
    def test_myna_pin_status_sequence(self, issued_card: EmulatedCard) -> None:
        # MYNA src/pin.rs: select, SELECT EF, VERIFY without data; 63Cx or it stops.
        card = issued_card
        answers = []
        for select, fids in ((SELECT_TEXT, (0x0011, 0x0014, 0x0015)),
                             (SELECT_SURFACE, (0x0013, 0x0012)),
                             (SELECT_JPKI, (0x0018, 0x001B))):
            card.send(select)
            for fid in fids:
                assert card.sw(select_ef(fid)) == "9000"
                answers.append(card.sw(EMPTY_VERIFY))
        assert answers == ["63C3", "63CA", "63CA", "63CA", "63CA", "63C3", "63C5"]

    def test_client_pin_status(self, issued_card: EmulatedCard, blank_card: EmulatedCard,
                               ) -> None:
        status = pin_status(issued_card.client)
        assert [(s.application, s.fid, s.retries) for s in status] == [
            ("券面事項入力補助AP", 0x11, 3), ("券面事項入力補助AP", 0x14, 10),
            ("券面事項入力補助AP", 0x15, 10), ("券面事項確認AP", 0x13, 10),
            ("券面事項確認AP", 0x12, 10), ("券面事項確認AP", 0x11, 10),
            ("公的個人認証AP", 0x18, 3), ("公的個人認証AP", 0x1B, 5)]
        # A card not yet issued: the applications answer, their references are not set (6A88).
        assert blank_card.sw(SELECT_TEXT) == "9000"
        assert blank_card.sw(select_ef(0x0011)) == "9000"
        assert blank_card.sw(EMPTY_VERIFY) == "6A88"
        assert all(s.retries is None for s in pin_status(blank_card.client))
        assert PinStatus("x", "y", 1, None).retries is None


# --- counters ------------------------------------------------------------------------------------


class TestCounters:
    def test_the_pin_counts_down_and_locks(self, issued_card: EmulatedCard) -> None:
        card = issued_card
        card.send(SELECT_TEXT)
        card.send(select_ef(0x0011))
        assert card.sw(EMPTY_VERIFY) == "63C3"
        assert card.sw(verify("0000")) == "63C2"
        assert card.sw(EMPTY_VERIFY) == "63C2"  # the query spends nothing
        assert card.sw(verify("12345")) == "63C1"  # wrong format: a card compares, a try gone
        assert card.sw(verify("0001")) == "63C0"  # the exhausting attempt
        with Unchanged(card):
            assert card.sw(EMPTY_VERIFY) == "6984"
            assert card.sw(verify(FACE_PIN)) == "6984"  # even the right one
            assert card.sw(select_ef(0x0001)) == "9000"
            assert card.sw(read(0, 17)) == "6982"
            card.send(select_ef(0x0011))
        # The lock survives a restart; the other references are untouched.
        again = card.reopen()
        again.send(SELECT_TEXT)
        again.send(select_ef(0x0011))
        assert again.sw(EMPTY_VERIFY) == "6984"
        again.send(select_ef(0x0014))
        assert again.sw(verify(SURFACE.my_number)) == "9000"  # 照合番号A still opens 0001
        again.send(select_ef(0x0001))
        assert again.sw(read(0, 17)).endswith("9000")

    def test_a_correct_value_resets_the_counter(self, issued_card: EmulatedCard) -> None:
        card = issued_card
        card.send(SELECT_SURFACE)
        card.send(select_ef(0x0012))
        for left in range(9, 6, -1):
            assert card.sw(verify("00000000000000")) == f"63C{left:X}"
        assert card.sw(verify(SURFACE.code_b)) == "9000"
        assert card.sw(EMPTY_VERIFY) == "63CA"
        assert CardState.load(card.path).face_pins[(FaceAp.SURFACE, 0x12)].retries == 10

    def test_code_b_locks_after_ten(self, issued_card: EmulatedCard) -> None:
        card = issued_card
        card.send(SELECT_SURFACE)
        card.send(select_ef(0x0012))
        answers = [card.sw(verify("11111111111111")) for _ in range(10)]
        assert answers == [f"63C{n:X}" for n in range(9, -1, -1)]
        assert card.sw(verify(SURFACE.code_b)) == "6984"
        card.send(select_ef(0x0013))
        assert card.sw(EMPTY_VERIFY) == "63CA"  # 照合番号A has its own counter

    def test_client_errors(self, issued_card: EmulatedCard) -> None:
        client = FaceApClient(issued_card.client)
        client.select(FaceAp.TEXT)
        with pytest.raises(InvalidPinFormat) as info:
            client.verify(face_aps.TEXT_PIN, "12a4")
        assert "12a4" not in str(info.value)
        assert client.retries(face_aps.TEXT_PIN) == 3  # refused before the card: no try spent
        with pytest.raises(SecurityStatusNotSatisfied):
            client.read_my_number()
        with pytest.raises(WrongPin) as wrong:
            client.verify(face_aps.TEXT_PIN, "9999")
        assert wrong.value.retries_left == 2
        for _ in range(2):
            with pytest.raises(WrongPin):
                client.verify(face_aps.TEXT_PIN, "9999")
        with pytest.raises(PinBlocked):
            client.verify(face_aps.TEXT_PIN, FACE_PIN)
        assert client.retries(face_aps.TEXT_PIN) == 0


# --- who opens what ------------------------------------------------------------------------------


OPENS = {  # reference §4.6 table
    face_aps.TEXT_PIN: {0x0001, 0x0002, 0x0003, 0x0005},
    face_aps.TEXT_CODE_A: {0x0001, 0x0003, 0x0005},
    face_aps.TEXT_CODE_B: {0x0002, 0x0003, 0x0005},
    face_aps.SURFACE_BIRTH: {0x0001, 0x0003},
    face_aps.SURFACE_CODE_A: {0x0002, 0x0003, 0x0005},
    face_aps.SURFACE_CODE_B: {0x0002, 0x0003},
}
VALUES = {face_aps.TEXT_PIN: FACE_PIN, face_aps.TEXT_CODE_A: SURFACE.my_number,
          face_aps.TEXT_CODE_B: SURFACE.code_b, face_aps.SURFACE_BIRTH: SURFACE.birth_key,
          face_aps.SURFACE_CODE_A: SURFACE.my_number, face_aps.SURFACE_CODE_B: SURFACE.code_b}


@pytest.mark.parametrize("reference", list(OPENS), ids=lambda r: f"{r.ap.name}-{r.fid:04X}")
def test_each_credential_opens_its_files_and_no_other(issued_card: EmulatedCard,
                                                      issuer_key: rsa.RSAPrivateKey,
                                                      reference: face_aps.Credential) -> None:
    expected = {**face_data.build_text_ap(SURFACE, issuer_key),
                **face_data.build_surface_ap(SURFACE, issuer_key)}
    client = FaceApClient(issued_card.client)
    client.select(reference.ap)
    files = [f for f in face_aps.DATA_FILES if f.ap is reference.ap]
    for ef in files:  # before: only the free files
        if ef.opened_by:
            with pytest.raises(SecurityStatusNotSatisfied):
                client.read_file(ef)
    client.verify(reference, VALUES[reference])
    for ef in files:
        if ef.fid in OPENS[reference]:
            raw = client.read_file(ef)
            # What issuance wrote (the records' signatures are deterministic, PKCS#1 v1.5), up
            # to the end of its object (EF 0001's filler is not part of it).
            assert raw == expected[ef][:face_data.first_object(expected[ef])[2]]
        else:
            with pytest.raises(SecurityStatusNotSatisfied):
                client.read_file(ef)


def test_what_a_reader_decodes(issued_card: EmulatedCard, issuer_key: rsa.RSAPrivateKey,
                               ) -> None:
    client = FaceApClient(issued_card.client)
    client.select(FaceAp.TEXT)
    client.verify(face_aps.TEXT_PIN, FACE_PIN)
    assert client.read_my_number() == SURFACE.my_number
    basic4 = client.read_basic4()
    assert (basic4.name, basic4.address, basic4.birth_date, basic4.sex) == (
        SURFACE.name, SURFACE.address, SURFACE.birth_date, SURFACE.sex)
    issued_card.send(select_ef(0x0001))
    assert bytes.fromhex(issued_card.send(read(0, 17))[:-4]) == (
        b"\xff\x10\x0c" + SURFACE.my_number.encode() + b"\xff\xff")  # myna reads 17 bytes
    client.select(FaceAp.SURFACE)
    client.verify(face_aps.SURFACE_CODE_B, SURFACE.code_b)
    face = client.read_card_face()
    face.verify(issuer_key.public_key())
    assert (face.birth_date, face.sex, face.expiry) == (SURFACE.birth_date, 2, SURFACE.expiry)
    assert face.photo.startswith(b"\x89PNG\r\n\x1a\n")
    assert face.photo == face_data.synthetic_face_png(SURFACE.my_number.encode())
    assert face_data.parse_public_key(face.public_key).public_numbers() == \
        issuer_key.public_key().public_numbers()
    # The offset table points at each field (reference §4.6: from the start of the file).
    raw = client.read_file(face_aps.SURFACE_FACE)
    _tag, value, _end = face_data.first_object(raw)
    table = dict(tlv.parse_tlvs(value))[0xDF21]
    offsets = [int.from_bytes(table[i:i + 2], "big") for i in range(0, len(table), 2)]
    assert [raw[o:o + 2].hex().upper() for o in offsets] == [
        f"DF{t:02X}" for t in range(0x22, 0x2B)]


# --- refusals: the status word, and nothing changed ----------------------------------------------


class TestRefusals:
    def test_reading(self, issued_card: EmulatedCard) -> None:
        card = issued_card
        card.send(SELECT_TEXT)
        card.send(select_ef(0x0002))
        with Unchanged(card):
            assert card.sw(read(0, 0)) == "6982"  # before the PIN
        card.send(select_ef(0x0011))
        card.send(verify(FACE_PIN))
        with Unchanged(card):
            assert card.sw(read(0, 4)) == "6981"  # a key reference is not data
            assert card.sw("00B0000000" + "00") == "6700"  # case 3/4 shapes: not a READ
            assert card.sw("00B00000") == "6700"  # no Le
            assert card.sw("00B0A00000") == "6A86"  # P1 b8 set with b6/b7: undefined
            assert card.sw("00B0860000") == "6A82"  # SFI 6: no such file here
        card.send(select_ef(0x0001))
        with Unchanged(card):
            assert card.sw(read(17, 1)) == "6B00"  # past the end
            assert card.send(read(0, 32)) == "6C11"  # Le too long: the exact length
        assert card.sw("00B0810011").endswith("9000")  # by SFI 1

    def test_verify(self, issued_card: EmulatedCard) -> None:
        card = issued_card
        card.send(SELECT_TEXT)
        with Unchanged(card):
            assert card.sw(EMPTY_VERIFY) == "6986"  # no current EF
        card.send(select_ef(0x0002))
        with Unchanged(card):
            assert card.sw(verify(FACE_PIN)) == "6981"  # the current EF is data
            assert card.sw(verify(FACE_PIN, p2="81")) == "6A88"  # SFI 1 names a data file
            assert card.sw(verify(FACE_PIN, p2="00")) == "6A86"
            assert card.sw(verify(FACE_PIN, p2="9F")) == "6A86"
            assert card.sw("00200180" "04" + FACE_PIN.encode().hex()) == "6A86"  # P1 01
            assert card.sw("00200091" "04" + FACE_PIN.encode().hex() + "00") == "6700"  # Le
            assert card.sw("0020009105" + FACE_PIN.encode().hex()) == "6700"  # Lc 5, 4 bytes
            assert card.sw("00200091" "11" + "31" * 17) == "6700"  # 17 bytes: too long
            assert card.sw("0020009100012C" + "31" * 300) == "6700"  # extended, 300 bytes
            assert card.sw("002000") == "6700"  # a truncated header
        assert card.sw(verify(FACE_PIN, p2="91")) == "9000"  # by SFI 11 (0x91 = 80|11)

    def test_change(self, issued_card: EmulatedCard) -> None:
        card = issued_card
        card.send(SELECT_TEXT)
        card.send(select_ef(0x0011))
        with Unchanged(card):
            assert card.sw("00240180" "04" + b"4321".hex()) == "6982"  # not verified
            assert card.sw("00240080" "04" + b"4321".hex()) == "6A86"  # P1 00: not offered
            assert card.sw("00240180") == "6700"  # no new value
        assert card.sw(verify(FACE_PIN)) == "9000"
        with Unchanged(card):
            assert card.sw("00240180" "05" + b"43210".hex()) == "6A80"  # 5 digits
            assert card.sw("00240180" "04" + b"43a1".hex()) == "6A80"
        card.send(select_ef(0x0014))
        card.send(verify(SURFACE.my_number))
        with Unchanged(card):
            assert card.sw("00240180" "0C" + b"123456789012".hex()) == "6A81"  # 照合番号A
        card.send(select_ef(0x0011))
        assert card.sw("00240180" "04" + b"4321".hex()) == "9000"
        assert card.sw(verify("4321")) == "9000"
        assert card.sw(verify(FACE_PIN)) == "63C2"

    def test_issuance_commands_need_the_issuer(self, issued_card: EmulatedCard,
                                               issuer_key: rsa.RSAPrivateKey) -> None:
        card = issued_card
        card.send(SELECT_TEXT)
        card.send(select_ef(0x0001))
        with Unchanged(card):
            assert card.sw("00D6000003" + "FF100C") == "6982"
            assert card.sw("002C029104" + b"0000".hex()) == "6982"
            assert card.sw("002C0391") == "6982"
        card.client.authenticate_issuer(issuer_key)
        with Unchanged(card):
            assert card.sw("002C029103" + b"000".hex()) == "6A80"  # 3 digits
            assert card.sw("002C02940B" + b"12345678901".hex()) == "6A80"  # 照合番号A: 12
            assert card.sw("002C0191" "04" + b"0000".hex()) == "6A86"
            assert card.sw("002C0291") == "6700"  # P1 02 needs the value
            assert card.sw("00D6001203" + "FFFFFF") == "6B00"  # a hole after the end
            assert card.sw("00D6000012" + "00" * 18) == "6A84"  # over EF 0001's 17 bytes
            card.send(select_ef(0x0011))
            assert card.sw("00D6000001" + "00") == "6981"  # a key reference is not data
            card.send(select_ef(0x0001))
        assert card.sw("002C0391") == "9000"  # a counter reset, value kept

    def test_a_card_not_yet_issued(self, blank_card: EmulatedCard) -> None:
        card = blank_card
        card.send(SELECT_SURFACE)
        card.send(select_ef(0x0013))
        with Unchanged(card):
            assert card.sw(verify("123456789018")) == "6A88"  # never set
            assert card.sw("00240180" "0C" + b"123456789018".hex()) == "6A81"
        card.send(select_ef(0x0003))
        with Unchanged(card):
            assert card.sw(read(0, 0)) == "6B00"  # a free file, still empty

    def test_a_failed_write_spends_nothing(self, issued_card: EmulatedCard,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        card = issued_card
        card.send(SELECT_TEXT)
        card.send(select_ef(0x0011))

        def disk_full(self: CardState, path: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(CardState, "save", disk_full)
        with Unchanged(card):
            assert card.sw(verify("0000")) == "6581"
        monkeypatch.undo()
        assert card.sw(EMPTY_VERIFY) == "63C3"


# --- issuance and the state file -----------------------------------------------------------------


def test_issuance_refuses_a_bad_pin_before_the_card(blank_card: EmulatedCard,
                                                    issuer_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(InvalidPinFormat):
        issue_face_aps(blank_card.client, issuer_key, SURFACE, pin="12345")
    assert blank_card.emulator.apdu_count == 0


def test_the_state_file_keeps_them_and_loads_old_files(issued_card: EmulatedCard,
                                                       tmp_path: Path) -> None:
    document = json.loads(issued_card.path.read_text())
    assert set(document["applications"]) == {"D3921000310001010408", "D3921000310001010402"}
    assert set(document["applications"]["D3921000310001010408"]["pins"]) == {
        "0011", "0014", "0015"}
    text = issued_card.path.read_text()
    for secret in (FACE_PIN, SURFACE.code_b, SURFACE.birth_key):
        assert f'"{secret}"' not in text  # verifiers, not values
    state = CardState.load(issued_card.path)
    assert CardState.from_json(state.to_json()) == state
    # A state written before these applications existed loads with them blank.
    del document["applications"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(document))
    loaded = JpkiCardEmulator.open(old)
    assert loaded.state.face_pins == {}
    assert loaded.state.face_files[(FaceAp.TEXT, 0x0001)] == b""
    client = JpkiCard(InProcessTransport(loaded))
    client.select_jpki_ap()
    assert client.pin_retries(Pin.AUTH) == 3
