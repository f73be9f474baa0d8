"""PIN semantics of the emulated JPKI-AP, status word by status word (reference §4.5).

Raw APDUs on purpose: these tests pin the bytes a real client sees.
"""

from __future__ import annotations

import pytest

from devices.card.errors import InvalidPinFormat, PinBlocked, WrongPin
from devices.card.jpki_ap import Pin
from tests.devices.card.conftest import AUTH_PIN, SIGN_PASSWORD, EmulatedCard

SELECT_AP = "00A4040C0AD392F000260100000001"
SELECT_AUTH_PIN = "00A4020C020018"
SELECT_SIGN_PIN = "00A4020C02001B"
EMPTY_VERIFY = "00200080"


def verify(value: str) -> str:
    raw = value.encode("ascii")
    return f"00200080{len(raw):02X}{raw.hex()}"


def change(value: str) -> str:
    raw = value.encode("ascii")
    return f"00240180{len(raw):02X}{raw.hex()}"


@pytest.fixture
def auth(card: EmulatedCard) -> EmulatedCard:
    assert card.sw(SELECT_AP) == "9000"
    assert card.sw(SELECT_AUTH_PIN) == "9000"
    return card


@pytest.fixture
def sign(card: EmulatedCard) -> EmulatedCard:
    assert card.sw(SELECT_AP) == "9000"
    assert card.sw(SELECT_SIGN_PIN) == "9000"
    return card


class TestAuthPin:
    def test_every_status_word_to_blocked_and_after(self, auth: EmulatedCard) -> None:
        assert auth.sw(EMPTY_VERIFY) == "63C3"
        assert auth.sw(verify("0000")) == "63C2"
        assert auth.sw(EMPTY_VERIFY) == "63C2"  # the query spends nothing
        assert auth.sw(EMPTY_VERIFY) == "63C2"
        assert auth.sw(verify("0001")) == "63C1"
        assert auth.sw(verify("0002")) == "63C0"  # the exhausting attempt
        assert auth.sw(EMPTY_VERIFY) == "6984"
        assert auth.sw(verify("0003")) == "6984"  # every attempt after
        assert auth.sw(verify(AUTH_PIN)) == "6984"  # even the right one
        assert auth.sw(EMPTY_VERIFY) == "6984"

    def test_a_correct_pin_resets_the_counter(self, auth: EmulatedCard) -> None:
        assert auth.sw(verify("9999")) == "63C2"
        assert auth.sw(verify("9998")) == "63C1"
        assert auth.sw(verify(AUTH_PIN)) == "9000"
        assert auth.sw(EMPTY_VERIFY) == "63C3"
        assert auth.sw(verify("9999")) == "63C2"

    def test_query_answers_63cx_even_when_verified(self, auth: EmulatedCard) -> None:
        # OpenSC's PKCS#15 binding fails on anything but 63xx to an empty VERIFY.
        assert auth.sw(verify(AUTH_PIN)) == "9000"
        assert auth.sw(EMPTY_VERIFY) == "63C3"

    def test_wrong_format_is_a_wrong_pin(self, auth: EmulatedCard) -> None:
        # The card compares, it does not parse: 5 digits or letters spend a try.
        assert auth.sw(verify("12345")) == "63C2"
        assert auth.sw(verify("ABCD")) == "63C1"

    def test_by_short_file_identifier(self, card: EmulatedCard) -> None:
        # reference §4.4: ``00 20 00 98 04 31 32 33 34`` names EF 0018 by SFI.
        assert card.sw(SELECT_AP) == "9000"
        assert card.sw("0020009804" + b"0000".hex()) == "63C2"
        assert card.sw("00200098") == "63C2"
        assert card.sw("0020009804" + AUTH_PIN.encode().hex()) == "9000"
        assert card.sw("0020009B") == "63C5"  # the sign password, untouched

    def test_a_wrong_pin_clears_an_earlier_verification(self, auth: EmulatedCard) -> None:
        assert auth.sw(verify(AUTH_PIN)) == "9000"
        assert auth.sw(verify("0000")) == "63C2"
        assert auth.sw("00A4020C020017") == "9000"
        assert auth.sw("802A00800401020304" "00") == "6982"

    def test_counters_are_per_pin(self, card: EmulatedCard) -> None:
        assert card.sw(SELECT_AP) == "9000"
        assert card.sw(SELECT_AUTH_PIN) == "9000"
        assert card.sw(verify("0000")) == "63C2"
        assert card.sw(SELECT_SIGN_PIN) == "9000"
        assert card.sw(EMPTY_VERIFY) == "63C5"


class TestSignPassword:
    def test_five_tries(self, sign: EmulatedCard) -> None:
        assert sign.sw(EMPTY_VERIFY) == "63C5"
        for left in (4, 3, 2, 1):
            assert sign.sw(verify(f"WRONG{left}")) == f"63C{left}"
            assert sign.sw(EMPTY_VERIFY) == f"63C{left}"
        assert sign.sw(verify("WRONG0")) == "63C0"
        assert sign.sw(verify(SIGN_PASSWORD)) == "6984"
        assert sign.sw(EMPTY_VERIFY) == "6984"

    def test_correct_after_four_wrong(self, sign: EmulatedCard) -> None:
        for _ in range(4):
            sign.sw(verify("NOPE99"))
        assert sign.sw(EMPTY_VERIFY) == "63C1"
        assert sign.sw(verify(SIGN_PASSWORD)) == "9000"
        assert sign.sw(EMPTY_VERIFY) == "63C5"

    def test_the_card_compares_exact_bytes(self, sign: EmulatedCard) -> None:
        # Upper-casing is the client's job (reference §4.4); the card sees bytes.
        assert sign.sw(verify(SIGN_PASSWORD.lower())) == "63C4"

    def test_signing_certificate_needs_the_sign_password(self, sign: EmulatedCard) -> None:
        assert sign.sw("00A4020C020001") == "9000"
        assert sign.sw("00B0000004") == "6982"
        assert sign.sw(SELECT_SIGN_PIN) == "9000"
        assert sign.sw(verify(SIGN_PASSWORD)) == "9000"
        assert sign.sw("00A4020C020001") == "9000"
        assert sign.send("00B0000004")[:4] == "3082"
        # The auth PIN does not open it.
        sign.emulator.reset()
        assert sign.sw(SELECT_AP) == "9000"
        assert sign.sw(SELECT_AUTH_PIN) == "9000"
        assert sign.sw(verify(AUTH_PIN)) == "9000"
        assert sign.sw("00A4020C020001") == "9000"
        assert sign.sw("00B0000004") == "6982"


class TestChangePin:
    def test_needs_verify_first(self, auth: EmulatedCard) -> None:
        assert auth.sw(change("5678")) == "6982"
        assert auth.sw(verify(AUTH_PIN)) == "9000"
        assert auth.sw(change("5678")) == "9000"
        assert auth.sw(verify(AUTH_PIN)) == "63C2"
        assert auth.sw(verify("5678")) == "9000"

    def test_bad_new_pin_changes_nothing(self, auth: EmulatedCard) -> None:
        before = auth.path.read_bytes()
        assert auth.sw(verify(AUTH_PIN)) == "9000"
        for bad in ("567", "56789", "ABCD", "12 4"):
            assert auth.sw(change(bad)) == "6A80"
        assert auth.path.read_bytes() == before
        assert auth.sw(verify(AUTH_PIN)) == "9000"

    def test_sign_password_rules(self, sign: EmulatedCard) -> None:
        assert sign.sw(verify(SIGN_PASSWORD)) == "9000"
        for bad in ("ABCDEF", "123456", "AB12", "ABCDEFGHIJ1234567", "abc123"):
            assert sign.sw(change(bad)) == "6A80", bad
        assert sign.sw(change("NEW1PASSWORD")) == "9000"
        assert sign.sw(verify("NEW1PASSWORD")) == "9000"

    def test_p1_and_length(self, auth: EmulatedCard) -> None:
        assert auth.sw(verify(AUTH_PIN)) == "9000"
        assert auth.sw("0024008008" + b"12345678".hex()) == "6A86"  # old+new form: not offered
        assert auth.sw("00240180") == "6700"  # no new PIN

    def test_blocked_pin_cannot_be_changed(self, auth: EmulatedCard) -> None:
        for value in ("0000", "0001", "0002"):
            auth.sw(verify(value))
        assert auth.sw(change("5678")) == "6984"

    def test_with_the_client(self, card: EmulatedCard) -> None:
        card.client.select_jpki_ap()
        card.client.change_pin(Pin.SIGN, SIGN_PASSWORD.lower(), "fresh2pass")
        card.client.verify_pin(Pin.SIGN, "FRESH2PASS")
        with pytest.raises(WrongPin) as caught:
            card.client.change_pin(Pin.SIGN, SIGN_PASSWORD, "another1")
        assert caught.value.retries_left == 4


class TestClientPinErrors:
    def test_wrong_pin_and_blocked(self, card: EmulatedCard) -> None:
        client = card.client
        client.select_jpki_ap()
        assert client.pin_retries(Pin.AUTH) == 3
        with pytest.raises(WrongPin) as first:
            client.verify_pin(Pin.AUTH, "0000")
        assert (first.value.retries_left, first.value.blocked) == (2, False)
        client.verify_pin(Pin.AUTH, AUTH_PIN)
        for expected in (2, 1, 0):
            with pytest.raises(WrongPin) as caught:
                client.verify_pin(Pin.AUTH, "0000")
            assert caught.value.retries_left == expected
        assert caught.value.blocked
        assert client.pin_retries(Pin.AUTH) == 0
        with pytest.raises(PinBlocked):
            client.verify_pin(Pin.AUTH, AUTH_PIN)

    def test_malformed_pins_never_reach_the_card(self, card: EmulatedCard) -> None:
        card.client.select_jpki_ap()
        sent = card.emulator.apdu_count
        for pin, value in [(Pin.AUTH, "123"), (Pin.AUTH, "12a4"), (Pin.AUTH, "١٢٣٤"),
                           (Pin.SIGN, "abcdef"), (Pin.SIGN, "12345678"), (Pin.SIGN, "ﬀ1234"),
                           (Pin.SIGN, "A1" * 9)]:
            with pytest.raises(InvalidPinFormat) as caught:
                card.client.verify_pin(pin, value)
            assert value not in str(caught.value)
        assert card.emulator.apdu_count == sent
        assert card.client.pin_retries(Pin.SIGN) == 5

    def test_sign_password_is_upper_cased(self, card: EmulatedCard) -> None:
        card.client.select_jpki_ap()
        card.client.verify_pin(Pin.SIGN, SIGN_PASSWORD.lower())


class TestIssuerReset:
    def test_reset_retry_counter_unblocks_with_a_new_pin(self, card: EmulatedCard,
                                                         issuer_key: object) -> None:
        client = card.client
        client.select_jpki_ap()
        for _ in range(3):
            with pytest.raises(WrongPin):
                client.verify_pin(Pin.AUTH, "0000")
        assert client.pin_retries(Pin.AUTH) == 0
        client.authenticate_issuer(issuer_key)  # type: ignore[arg-type]
        client.reset_retry_counter(Pin.AUTH, "4321")
        assert client.pin_retries(Pin.AUTH) == 3
        with pytest.raises(WrongPin):
            client.verify_pin(Pin.AUTH, AUTH_PIN)
        client.verify_pin(Pin.AUTH, "4321")

    def test_reset_counter_only_keeps_the_pin(self, card: EmulatedCard,
                                              issuer_key: object) -> None:
        card.client.select_jpki_ap()
        for value in ("X1X1X1", "X2X2X2"):
            with pytest.raises(WrongPin):
                card.client.verify_pin(Pin.SIGN, value)
        card.client.authenticate_issuer(issuer_key)  # type: ignore[arg-type]
        assert card.sw("002C039B") == "9000"  # P1 03: counter only
        assert card.client.pin_retries(Pin.SIGN) == 5
        card.client.verify_pin(Pin.SIGN, SIGN_PASSWORD)

    def test_blank_card_pins_are_not_found(self, blank_card: EmulatedCard) -> None:
        assert blank_card.sw(SELECT_AP) == "9000"
        assert blank_card.sw(SELECT_AUTH_PIN) == "9000"
        assert blank_card.sw(EMPTY_VERIFY) == "6A88"
        assert blank_card.sw(verify("1234")) == "6A88"
