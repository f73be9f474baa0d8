"""Transports finish 61xx (GET RESPONSE) and 6Cxx (resend with Le = xx) exchanges
(reference §4.4), so that the client sees one complete response per command."""

from __future__ import annotations

import pytest

from devices.card.client import JpkiCard, der_length
from devices.card.errors import CardCommunicationError, MalformedCardResponse
from devices.card.transport import InProcessTransport, complete_exchange


class Scripted:
    """A card that answers from a script and records what it was sent."""

    def __init__(self, *answers: str) -> None:
        self.answers = [bytes.fromhex(a) for a in answers]
        self.sent: list[str] = []

    def process(self, apdu: bytes) -> bytes:
        self.sent.append(apdu.hex().upper())
        return self.answers.pop(0)


def test_get_response_chain() -> None:
    card = Scripted("AABB6103", "CCDDEE6101", "FF9000")
    response = InProcessTransport(card).transmit(bytes.fromhex("80CA000000"))
    assert response.hex().upper() == "AABBCCDDEEFF9000"
    assert card.sent == ["80CA000000", "00C0000003", "00C0000001"]


def test_61_00_means_256() -> None:
    card = Scripted("6100", "00" * 256 + "9000")
    response = complete_exchange(card.process, bytes.fromhex("802A0097020102"))
    assert len(response) == 258 and card.sent[1] == "00C0000000"


def test_wrong_le_is_resent_with_the_exact_length() -> None:
    card = Scripted("6C02", "8F009000")
    assert complete_exchange(card.process, bytes.fromhex("00B00001FF")).hex() == "8f009000"
    assert card.sent == ["00B00001FF", "00B0000102"]


def test_6c_then_61() -> None:
    card = Scripted("6C05", "01026103", "0304059000")
    assert complete_exchange(card.process, bytes.fromhex("00B0000010")).hex() == "01020304059000"


def test_6c_on_an_unparseable_command_is_returned_as_is() -> None:
    card = Scripted("6C02")
    assert complete_exchange(card.process, b"\x00\xb0").hex() == "6c02"


def test_a_card_that_never_stops_chaining() -> None:
    class Endless:
        def process(self, apdu: bytes) -> bytes:
            return b"\x00\x61\x01"

    with pytest.raises(CardCommunicationError):
        InProcessTransport(Endless()).transmit(bytes.fromhex("00C0000001"))


def test_a_response_without_status_word() -> None:
    with pytest.raises(CardCommunicationError):
        complete_exchange(lambda apdu: b"\x90", bytes.fromhex("00A40000"))


class TestClientParsing:
    def test_der_length(self) -> None:
        assert der_length(bytes.fromhex("3003")) == 5
        assert der_length(bytes.fromhex("308105")) == 8
        assert der_length(bytes.fromhex("30820100")) == 0x104
        assert der_length(bytes.fromhex("3082")) is None
        with pytest.raises(MalformedCardResponse):
            der_length(bytes.fromhex("3080"))  # indefinite length is not DER

    def test_read_binary_all_reads_in_chunks_with_offsets(self) -> None:
        der = bytes.fromhex("30820201") + bytes(range(256)) * 2 + b"\x01"
        answers = ["9000", der[:4].hex() + "9000", der[4:260].hex() + "9000",
                   der[260:516].hex() + "9000", der[516:].hex() + "9000"]
        card = Scripted(*answers)
        assert JpkiCard(InProcessTransport(card)).read_binary_all(0x000A) == der
        # As OpenSC: 4 bytes first, then READ BINARY with offsets (reference §4.4).
        assert card.sent == ["00A4020C02000A", "00B0000004", "00B0000400", "00B0010400",
                             "00B0020401"]

    def test_not_der(self) -> None:
        card = Scripted("9000", "FFFFFFFF9000")
        with pytest.raises(MalformedCardResponse):
            JpkiCard(InProcessTransport(card)).read_binary_all(0x0001)

    def test_a_garbled_public_key(self) -> None:
        from devices.card.jpki_ap import Key

        card = Scripted("7F4903810101" "9000")
        with pytest.raises(MalformedCardResponse):
            JpkiCard(InProcessTransport(card)).generate_key_pair(Key.AUTH)
        assert card.sent == ["0047000006B6048402001700"]
