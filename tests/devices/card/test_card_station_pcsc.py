"""The enrolment station through the real PC/SC stack, checked with OpenSC.

The station (``EnrolmentStation``) talks to the CA's REST API served by uvicorn (the ``served``
fixture, on SQLite and PostgreSQL) and to a blank card through pyscard → pcscd → vpcd →
``jpki-card emulate``, a process of its own on vpcd's second reader ("Virtual PCD 00 01", port
35964) so that the session's personalised card on 35963 is left alone. Afterwards OpenSC, an
independent JPKI client, must find the certificates our CA issued on the card and sign with the
authentication key. A card pulled out mid-enrolment (its emulator process killed during the
certificate writes) must leave the CA with the issued certificates revoked.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from devices.card.client import INS_UPDATE_BINARY, JpkiCard
from devices.card.errors import CardRemoved
from devices.card.transport import Transport
from devices.station.ca_client import CaClient
from devices.station.workflow import CARD_AUTH, CARD_SIGN, EnrolmentFailed, EnrolmentStation
from jpki.model import CaKind
from tests.devices.card.conftest import (
    AUTH_TOKEN,
    IN_PERSON_B,
    PKCS11_MODULE,
    SIGN_TOKEN,
    STATION_AUTH_PIN,
    STATION_SIGN_PASSWORD,
    BlankPcscCard,
    issued_certificate,
    opensc_slot,
    register_resident,
)

if TYPE_CHECKING:
    from tests.conftest import LiveServer

pytestmark = [pytest.mark.pcsc, pytest.mark.hsm]

ENROLMENT_STEPS = ["check PIN formats", "record identity proofing", "authenticate as issuer",
                   "generate key pairs on the card", "issue certificates", "write certificates",
                   "set PINs", "read back and verify", "confirm delivery"]


def run(args: Sequence[str], env: dict[str, str]) -> str:
    result = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def pkcs15_serials(listing: str) -> dict[str, int]:
    """``pkcs15-tool --list-certificates``: label → serial number (from "Encoded serial", the
    DER INTEGER, e.g. ``02 10 56CD…``); certificates whose serial OpenSC could not read are
    absent."""
    serials: dict[str, int] = {}
    label = None
    for line in listing.splitlines():
        if line.startswith("X.509 Certificate ["):
            label = line.partition("[")[2].rstrip("]")
        elif label is not None and line.strip().startswith("Encoded serial"):
            der = bytes.fromhex(line.partition(":")[2])
            assert der[0] == 0x02 and der[1] == len(der) - 2, line
            serials[label] = int.from_bytes(der[2:], "big", signed=True)
    return serials


def ca_certificate(served: LiveServer, kind: CaKind) -> x509.Certificate:
    with served.services.uow() as uow:
        generation = uow.cas.current(kind)
    assert generation is not None
    return x509.load_der_x509_certificate(generation.certificate_der)


def test_enrolment_over_pcsc_gives_a_card_opensc_signs_with(
        served: LiveServer, station_ca: CaClient, blank_pcsc_card: BlankPcscCard,
        issuer_key: rsa.RSAPrivateKey, opensc_env: dict[str, str], tmp_path: Path) -> None:
    from devices.card.pcsc import PcscTransport

    rid = register_resident(served)
    with PcscTransport.open(blank_pcsc_card.reader, exclusive=True) as transport:
        result = EnrolmentStation(station_ca, JpkiCard(transport), issuer_key).enroll(
            rid, proofing={**IN_PERSON_B}, auth_pin=STATION_AUTH_PIN,
            sign_pin=STATION_SIGN_PASSWORD)
    assert result.proofing_pattern == "B" and set(result.serials) == {CARD_AUTH, CARD_SIGN}
    assert [name for name, _ in result.steps] == ENROLMENT_STEPS
    auth = issued_certificate(served, result.serials[CARD_AUTH])
    sign = issued_certificate(served, result.serials[CARD_SIGN])
    auth_ca, sign_ca = ca_certificate(served, CaKind.AUTH), ca_certificate(served, CaKind.SIGN)
    # Issued by our CA, delivered, good.
    assert auth.issuer == auth_ca.subject and sign.issuer == sign_ca.subject
    auth.verify_directly_issued_by(auth_ca)
    sign.verify_directly_issued_by(sign_ca)
    for serial in result.serials.values():
        view = station_ca.certificate(serial)
        assert view["status"] == "good"
        with served.services.uow() as uow:
            row = uow.certificates.get_by_serial(serial)
            assert row is not None and row.delivered_at is not None

    reader = blank_pcsc_card.reader
    # OpenSC lists the four certificates; the signing one is private, so log in with the
    # signing password (auth id 02) to have its serial read too.
    listing = run(["pkcs15-tool", "--reader", reader, "--list-certificates", "--verify-pin",
                   "--auth-id", "02", "--pin", STATION_SIGN_PASSWORD], opensc_env)
    assert pkcs15_serials(listing) == {
        "User Authentication Certificate": auth.serial_number,
        "Digital Signature Certificate": sign.serial_number,
        "User Authentication Certificate CA": auth_ca.serial_number,
        "Digital Signature Certificate CA": sign_ca.serial_number,
    }
    # Byte for byte what the CA issued, as OpenSC reads it from the card.
    pem = run(["pkcs15-tool", "--reader", reader, "--read-certificate", "01"], opensc_env)
    assert x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER) == \
        auth.public_bytes(Encoding.DER)

    # PKCS#11: log in with the auth PIN the resident chose and sign with the card's auth key.
    slot = opensc_slot(opensc_env, reader, AUTH_TOKEN)
    message, signature = tmp_path / "message", tmp_path / "signature"
    message.write_bytes(b"login challenge from a relying party")
    run(["pkcs11-tool", "--module", str(PKCS11_MODULE), "--slot", str(slot.slot_id),
         "--login", "--pin", STATION_AUTH_PIN, "--sign", "--id", "01",
         "--mechanism", "SHA256-RSA-PKCS", "--input-file", str(message),
         "--output-file", str(signature)], opensc_env)
    public = auth.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature.read_bytes(), message.read_bytes(), padding.PKCS1v15(),
                  hashes.SHA256())
    # The sign token sits in the same reader, under the signing password.
    assert opensc_slot(opensc_env, reader, SIGN_TOKEN).slot_id != slot.slot_id


class PulledAfterFirstWrite:
    """A PC/SC transport whose card is pulled out (its emulator process killed) right after
    the card answered the first UPDATE BINARY: the next APDU finds no card."""

    def __init__(self, inner: Transport, card: BlankPcscCard) -> None:
        self.inner = inner
        self.card = card
        self.writes = 0

    def transmit(self, apdu: bytes) -> bytes:
        response = self.inner.transmit(apdu)
        if apdu[1] == INS_UPDATE_BINARY:
            self.writes += 1
            if self.writes == 1:
                self.card.process.kill()
                self.card.process.wait(10)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_card_pulled_out_over_pcsc_leaves_the_issued_certificates_revoked(
        served: LiveServer, station_ca: CaClient, blank_pcsc_card: BlankPcscCard,
        issuer_key: rsa.RSAPrivateKey) -> None:
    from devices.card.pcsc import PcscTransport

    rid = register_resident(served)
    transport = PulledAfterFirstWrite(
        PcscTransport.open(blank_pcsc_card.reader, exclusive=True), blank_pcsc_card)
    station = EnrolmentStation(station_ca, JpkiCard(transport), issuer_key)
    try:
        with pytest.raises(EnrolmentFailed) as info:
            station.enroll(rid, proofing={**IN_PERSON_B}, auth_pin=STATION_AUTH_PIN,
                           sign_pin=STATION_SIGN_PASSWORD)
    finally:
        transport.close()
    assert transport.writes == 1 and blank_pcsc_card.process.returncode is not None
    # What stopped it is the card leaving, as pcscd reports it — not a refusal by the card.
    assert isinstance(info.value.__cause__, CardRemoved), repr(info.value.__cause__)
    serials = str(info.value.context["serials"]).split(",")
    assert len(serials) == 2
    for serial in serials:
        # Revoked as "destroyed before delivery": reason unspecified (reference §3.2).
        view = station_ca.certificate(serial)
        assert (view["status"], view["revocation_reason"]) == ("revoked", "unspecified")
        with served.services.uow() as uow:
            row = uow.certificates.get_by_serial(serial)
            assert row is not None and row.delivered_at is None
