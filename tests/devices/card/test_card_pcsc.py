"""The emulator as a real card: pyscard → pcscd → vpcd → ``jpki-card emulate`` (a process).

One card for the session (tests/devices/card/conftest.py ``pcsc_card``), personalised over PC/SC;
each
test opens its own card session, which starts with a reset and ends with the connection.
"""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devices.card.apdu import CommandApdu
from devices.card.client import JpkiCard
from devices.card.errors import CardRemoved, SecurityStatusNotSatisfied, WrongPin
from devices.card.jpki_ap import JPKI_ATR, CertSlot, Ef, Key, Pin, SignScheme, sha256_digest_info
from tests.devices.card.conftest import AUTH_PIN, SIGN_PASSWORD, PcscCard

pytestmark = pytest.mark.pcsc


def test_reads_what_was_personalised(pcsc_card: PcscCard, pcsc_client: JpkiCard) -> None:
    from devices.card.pcsc import PcscTransport

    assert isinstance(pcsc_client.transport, PcscTransport)
    assert pcsc_client.transport.atr() == JPKI_ATR
    pcsc_client.select_jpki_ap()
    assert pcsc_client.token_label() == "JPKIAPICCTOKEN2"
    assert pcsc_client.availability().raw == bytes.fromhex("8F8F00")
    certificates = pcsc_card.personalisation.certificates
    for slot in (CertSlot.AUTH, CertSlot.AUTH_CA, CertSlot.SIGN_CA):
        assert pcsc_client.read_certificate(slot) == certificates[slot]
    with pytest.raises(SecurityStatusNotSatisfied):
        pcsc_client.read_certificate(CertSlot.SIGN)
    pcsc_client.verify_pin(Pin.SIGN, SIGN_PASSWORD)
    assert pcsc_client.read_certificate(CertSlot.SIGN) == certificates[CertSlot.SIGN]


def test_signs_with_both_keys(pcsc_card: PcscCard, pcsc_client: JpkiCard) -> None:
    message = b"signed through pcscd"
    digest_info = sha256_digest_info(hashlib.sha256(message).digest())
    pcsc_client.select_jpki_ap()
    pcsc_client.verify_pin(Pin.AUTH, AUTH_PIN)
    pcsc_client.verify_pin(Pin.SIGN, SIGN_PASSWORD)
    done = pcsc_card.personalisation
    for key, public in ((Key.AUTH, done.auth_public), (Key.SIGN, done.sign_public)):
        signature = pcsc_client.sign(key, digest_info)
        public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    pss = pcsc_client.compute_signature(Key.SIGN, message, SignScheme.PSS_SHA256, by_sfi=True)
    done.sign_public.verify(pss, message, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                            hashes.SHA256())


def test_61xx_and_6cxx_through_pcscd(pcsc_client: JpkiCard) -> None:
    pcsc_client.select_jpki_ap()
    pcsc_client.verify_pin(Pin.AUTH, AUTH_PIN)
    # No Le: the card answers 61 00 and the transport fetches 256 bytes with GET RESPONSE.
    answer = pcsc_client.transmit(CommandApdu(0x80, 0x2A, 0x00, 0x97, sha256_digest_info(
        bytes(32))))
    assert answer.ok and len(answer.data) == 256
    pcsc_client.select_ef(Ef.AVAILABILITY)
    assert pcsc_client.read_binary(0, 100) == bytes.fromhex("8F8F00")  # 6C03, resent


def test_the_card_session_ends_with_the_connection(pcsc_card: PcscCard) -> None:
    from devices.card.pcsc import PcscTransport

    with PcscTransport.open(pcsc_card.reader) as transport:
        card = JpkiCard(transport)
        card.select_jpki_ap()
        card.verify_pin(Pin.AUTH, AUTH_PIN)
    with PcscTransport.open(pcsc_card.reader) as transport:
        card = JpkiCard(transport)
        card.select_jpki_ap()
        with pytest.raises(SecurityStatusNotSatisfied):
            card.sign(Key.AUTH, sha256_digest_info(bytes(32)))


def test_retry_counter_over_pcsc(pcsc_client: JpkiCard) -> None:
    pcsc_client.select_jpki_ap()
    assert pcsc_client.pin_retries(Pin.AUTH) == 3
    with pytest.raises(WrongPin) as caught:
        pcsc_client.verify_pin(Pin.AUTH, "0000")
    assert caught.value.retries_left == 2
    assert pcsc_client.pin_retries(Pin.AUTH) == 2
    pcsc_client.verify_pin(Pin.AUTH, AUTH_PIN)
    assert pcsc_client.pin_retries(Pin.AUTH) == 3


def test_restart_removal_and_persistence(pcsc_card: PcscCard, tmp_path: Path,
                                         issuer_key: rsa.RSAPrivateKey) -> None:
    """A second card in vpcd's second reader: killed mid-session it is a removed card; started
    again on the same state file it remembers its retry counter."""
    from devices.card import virtual_reader
    from devices.card.pcsc import PcscTransport

    reader = virtual_reader.VPCD_PORTS[35964]
    public = tmp_path / "issuer.pub.pem"
    public.write_bytes(issuer_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    state = tmp_path / "second.json"
    with virtual_reader.emulator_running(state, issuer_public_key=public, port=35964,
                                         log=tmp_path / "emulator.log") as process:
        transport = PcscTransport.open(reader)
        card = JpkiCard(transport)
        card.select_jpki_ap()
        card.authenticate_issuer(issuer_key)
        card.reset_retry_counter(Pin.AUTH, "2468")
        with pytest.raises(WrongPin):
            card.verify_pin(Pin.AUTH, "1357")
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        with pytest.raises(CardRemoved):
            card.select_jpki_ap()
        transport.close()
    with (virtual_reader.emulator_running(state, port=35964, log=tmp_path / "emulator.log"),
          PcscTransport.open(reader) as transport):
        card = JpkiCard(transport)
        card.select_jpki_ap()
        assert card.pin_retries(Pin.AUTH) == 2
        card.verify_pin(Pin.AUTH, "2468")
    log = (tmp_path / "emulator.log").read_text()
    assert "2468" not in log and "APDUs" in log
