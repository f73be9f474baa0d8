"""The card's side of the kiosk reset (architecture §7.1): EXTERNAL AUTHENTICATE P2 9B with the
issuer's signature over jpki.protocol.pin_reset.card_reset_message lets the very next command
reset the signing PIN, once, on this card only — and authenticates no one."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from devices.card.jpki_ap import CertSlot, Pin
from jpki.protocol.pin_reset import card_reset_message
from tests.devices.card.conftest import AUTH_PIN, SIGN_PASSWORD, EmulatedCard, Personalisation

SELECT_AP = "00A4040C0AD392F000260100000001"
NEW = b"NEWPASS42"
RESET_SIGN = "002C029B" + f"{len(NEW):02X}" + NEW.hex()
RESET_AUTH = "002C029804" + b"5555".hex()


def _authorisation(key: rsa.RSAPrivateKey, challenge: bytes, auth_der: bytes) -> str:
    signature = key.sign(card_reset_message(challenge, auth_der), padding.PKCS1v15(),
                         hashes.SHA256())
    return "0082009B" + "00" + f"{len(signature):04X}" + signature.hex()  # extended Lc


def _challenge(card: EmulatedCard) -> bytes:
    answer = card.send("0084000020")
    assert answer[-4:] == "9000"
    return bytes.fromhex(answer[:-4])


@pytest.fixture
def auth_der(personalisation: Personalisation) -> bytes:
    return personalisation.certificates[CertSlot.AUTH].public_bytes(Encoding.DER)


def test_the_cas_authorisation_resets_the_signing_pin_once(
        card: EmulatedCard, issuer_key: rsa.RSAPrivateKey, auth_der: bytes) -> None:
    assert card.sw(SELECT_AP) == "9000"
    assert card.sw(_authorisation(issuer_key, _challenge(card), auth_der)) == "9000"
    assert card.sw(RESET_SIGN) == "9000"
    card.client.select_jpki_ap()
    card.client.verify_pin(Pin.SIGN, NEW.decode())
    # Once: a second reset needs a new authorisation.
    assert card.sw(RESET_SIGN) == "6982"
    # And it authenticated no one: the issuer's commands stay refused.
    assert card.sw("00D6000003" + "8F8F00") == "6982"


def test_a_replayed_or_foreign_authorisation_is_refused_and_changes_nothing(
        card: EmulatedCard, issuer_key: rsa.RSAPrivateKey, auth_der: bytes) -> None:
    assert card.sw(SELECT_AP) == "9000"
    before = card.path.read_bytes()
    challenge = _challenge(card)
    authorisation = _authorisation(issuer_key, challenge, auth_der)
    assert card.sw(authorisation) == "9000"
    assert card.sw(authorisation) == "6985"  # the challenge is gone: no replay
    # For another card (another auth certificate): 6300.
    assert card.sw(_authorisation(issuer_key, _challenge(card), b"another card")) == "6300"
    assert card.sw(RESET_SIGN) == "6982"
    # Signed by another key: 6300.
    stranger = rsa.generate_private_key(65537, 2048)
    assert card.sw(_authorisation(stranger, _challenge(card), auth_der)) == "6300"
    # The plain issuer authentication's signature (over the bare challenge) is not one.
    challenge = _challenge(card)
    bare = issuer_key.sign(challenge, padding.PKCS1v15(), hashes.SHA256())
    assert card.sw("0082009B00" + f"{len(bare):04X}" + bare.hex()) == "6300"
    assert card.path.read_bytes() == before
    card.client.select_jpki_ap()
    card.client.verify_pin(Pin.SIGN, SIGN_PASSWORD)


def test_the_authorisation_names_the_signing_pin_and_the_very_next_command(
        card: EmulatedCard, issuer_key: rsa.RSAPrivateKey, auth_der: bytes) -> None:
    assert card.sw(SELECT_AP) == "9000"
    assert card.sw(_authorisation(issuer_key, _challenge(card), auth_der)) == "9000"
    assert card.sw(RESET_AUTH) == "6982"  # the auth PIN is not the signing PIN
    assert card.sw(_authorisation(issuer_key, _challenge(card), auth_der)) == "9000"
    assert card.sw("00A4020C02001B") == "9000"  # any other command discards it
    assert card.sw(RESET_SIGN) == "6982"
    # Without a challenge: 6985; P2 other than 00 / 9B: 6A86; a malformed new password: 6A80.
    signature = "00" * 256
    assert card.sw("0082009B000100" + signature) == "6985"
    assert card.sw("00820097000100" + signature) == "6A86"
    assert card.sw(_authorisation(issuer_key, _challenge(card), auth_der)) == "9000"
    assert card.sw("002C029B03" + b"abc".hex()) == "6A80"
    card.client.select_jpki_ap()
    card.client.verify_pin(Pin.SIGN, SIGN_PASSWORD)
    card.client.verify_pin(Pin.AUTH, AUTH_PIN)


def test_a_card_without_an_auth_certificate_refuses_it(
        blank_card: EmulatedCard, issuer_key: rsa.RSAPrivateKey) -> None:
    assert blank_card.sw(SELECT_AP) == "9000"
    assert blank_card.sw(_authorisation(issuer_key, _challenge(blank_card), b"")) == "6985"


def test_a_blocked_signing_pin_is_unblocked_by_the_reset(
        card: EmulatedCard, issuer_key: rsa.RSAPrivateKey, auth_der: bytes) -> None:
    card.client.select_jpki_ap()
    for _ in range(5):
        card.sw("00A4020C02001B")
        card.sw("0020008006" + b"WRONG1".hex())
    assert card.client.pin_retries(Pin.SIGN) == 0
    assert card.sw(_authorisation(issuer_key, _challenge(card), auth_der)) == "9000"
    assert card.sw(RESET_SIGN) == "9000"
    assert card.client.pin_retries(Pin.SIGN) == 5
