"""Fixtures for the card tests: in-process emulator cards, a throwaway test PKI, and — once per
session — the real PC/SC stack (pcscd + vpcd) with the emulator running as its own process.

In-process cards are cheap: a blank card is a new state file; a personalised card is a copy of
one personalised once per session (RSA key generation on the card costs ~0.2 s a key).

The PC/SC fixture (tests marked ``pcsc``) starts ``pcscd --foreground`` only if its socket does
not answer, and stops it at the end if it started it; it starts the emulator process
(``python -m api.cli_card emulate``: ``jpki card emulate`` without the CA's imports) on vpcd's port
35963 with a temporary state and waits for the card with pyscard's CardRequest.
A missing pcscd, vpcd or pyscard skips those tests on a workstation and fails them in CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from jpki.card.client import JpkiCard
from jpki.card.emulator import JpkiCardEmulator
from jpki.card.jpki_ap import CertSlot, Key, Pin
from jpki.card.transport import InProcessTransport
from tests.components import missing_component

AUTH_PIN = "1234"
SIGN_PASSWORD = "ABC123XYZ"
ROOT = Path(__file__).resolve().parents[2]


# --- keys and a throwaway PKI -----------------------------------------------------------


@pytest.fixture(scope="session")
def issuer_key() -> rsa.RSAPrivateKey:
    """The issuer (enrolment station) key whose public half every test card trusts."""
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="session")
def issuer_public_pem(issuer_key: rsa.RSAPrivateKey) -> bytes:
    return issuer_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class TestPki:
    ca_key: rsa.RSAPrivateKey
    ca: x509.Certificate

    def issue(self, common_name: str, public_key: rsa.RSAPublicKey) -> x509.Certificate:
        return _certificate(_name(common_name), public_key, self.ca.subject, self.ca_key,
                            ca=False)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: x509.Name, public_key: rsa.RSAPublicKey, issuer: x509.Name,
                 issuer_key: rsa.RSAPrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


@pytest.fixture(scope="session")
def test_pki() -> TestPki:
    key = rsa.generate_private_key(65537, 2048)
    name = _name("jpki card tests CA")
    return TestPki(key, _certificate(name, key.public_key(), name, key, ca=True))


@dataclass(frozen=True)
class Personalisation:
    """What was put on a personalised card (the private keys stayed on it)."""

    auth_public: rsa.RSAPublicKey
    sign_public: rsa.RSAPublicKey
    certificates: dict[CertSlot, x509.Certificate]


def personalise(card: JpkiCard, issuer: rsa.RSAPrivateKey, pki: TestPki) -> Personalisation:
    """What an enrolment station does: issuer auth, keys, certificates, availability, PINs."""
    card.select_jpki_ap()
    card.authenticate_issuer(issuer)
    auth_public = card.generate_key_pair(Key.AUTH)
    sign_public = card.generate_key_pair(Key.SIGN)
    certificates = {
        CertSlot.AUTH: pki.issue("auth", auth_public),
        CertSlot.SIGN: pki.issue("sign", sign_public),
        CertSlot.AUTH_CA: pki.ca,
        CertSlot.SIGN_CA: pki.ca,
    }
    for slot, certificate in certificates.items():
        card.write_certificate(slot, certificate)
    card.set_availability(sign=True, auth=True)
    card.reset_retry_counter(Pin.AUTH, AUTH_PIN)
    card.reset_retry_counter(Pin.SIGN, SIGN_PASSWORD)
    return Personalisation(auth_public, sign_public, certificates)


# --- in-process cards ---------------------------------------------------------------------


@dataclass
class EmulatedCard:
    emulator: JpkiCardEmulator
    client: JpkiCard
    path: Path

    def send(self, hex_apdu: str) -> str:
        """Raw exchange without the transport's 61xx / 6Cxx handling; hex in, hex out."""
        return self.emulator.process(bytes.fromhex(hex_apdu.replace(" ", ""))).hex().upper()

    def sw(self, hex_apdu: str) -> str:
        return self.send(hex_apdu)[-4:]

    def reopen(self) -> EmulatedCard:
        """The same card after a restart of the emulator process."""
        emulator = JpkiCardEmulator.open(self.path)
        return EmulatedCard(emulator, JpkiCard(InProcessTransport(emulator)), self.path)


def _card(path: Path) -> EmulatedCard:
    emulator = JpkiCardEmulator.open(path)
    return EmulatedCard(emulator, JpkiCard(InProcessTransport(emulator)), path)


@pytest.fixture
def blank_card(tmp_path: Path, issuer_public_pem: bytes) -> EmulatedCard:
    path = tmp_path / "blank.json"
    JpkiCardEmulator.create(path, issuer_public_pem)
    return _card(path)


@pytest.fixture(scope="session")
def personalised_template(tmp_path_factory: pytest.TempPathFactory, issuer_key: rsa.RSAPrivateKey,
                          issuer_public_pem: bytes, test_pki: TestPki,
                          ) -> tuple[Path, Personalisation]:
    path = tmp_path_factory.mktemp("card-template") / "card.json"
    emulator = JpkiCardEmulator.create(path, issuer_public_pem)
    return path, personalise(JpkiCard(InProcessTransport(emulator)), issuer_key, test_pki)


@pytest.fixture
def personalisation(personalised_template: tuple[Path, Personalisation]) -> Personalisation:
    return personalised_template[1]


@pytest.fixture
def card(tmp_path: Path, personalised_template: tuple[Path, Personalisation]) -> EmulatedCard:
    """A personalised card (PINs 1234 / ABC123XYZ, both key pairs and certificates), fresh
    session, AP not selected."""
    path = tmp_path / "card.json"
    shutil.copy(personalised_template[0], path)  # with its mode, 0600
    return _card(path)


# --- the real PC/SC stack, once per session ----------------------------------------------


@dataclass(frozen=True)
class PcscCard:
    reader: str
    state: Path
    log: Path
    personalisation: Personalisation


@pytest.fixture(scope="session")
def pcsc_card(tmp_path_factory: pytest.TempPathFactory, issuer_key: rsa.RSAPrivateKey,
              issuer_public_pem: bytes, test_pki: TestPki) -> Iterator[PcscCard]:
    """pcscd + vpcd + the emulator process, with a card personalised over PC/SC."""
    try:
        from jpki.card import pcsc, virtual_reader
    except ImportError as exc:  # pyscard not installed
        missing_component(f"pyscard is not installed: {exc}")
    directory = tmp_path_factory.mktemp("pcsc")
    public = directory / "issuer.pub.pem"
    public.write_bytes(issuer_public_pem)
    state, log = directory / "card.json", directory / "emulator.log"
    try:
        with (virtual_reader.pcscd_running(log=directory / "pcscd.log"),
              virtual_reader.emulator_running(state, issuer_public_key=public, log=log,
                                              env=_child_env())):
            with pcsc.PcscTransport.open(pcsc.VPCD_READER, exclusive=True) as transport:
                done = personalise(JpkiCard(transport), issuer_key, test_pki)
            yield PcscCard(pcsc.VPCD_READER, state, log, done)
    except virtual_reader.ComponentMissing as exc:
        missing_component(str(exc))


def _child_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) if not path else f"{ROOT}{os.pathsep}{path}"}


@pytest.fixture
def pcsc_client(pcsc_card: PcscCard) -> Iterator[JpkiCard]:
    """A fresh PC/SC session to the session's card (the card is powered down afterwards)."""
    from jpki.card.pcsc import PcscTransport

    transport = PcscTransport.open(pcsc_card.reader)
    try:
        yield JpkiCard(transport)
    finally:
        transport.close()
