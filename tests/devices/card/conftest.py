"""Fixtures for the card tests: in-process emulator cards, a throwaway test PKI, and — once per
session — the real PC/SC stack (pcscd + vpcd) with the emulator running as its own process.

In-process cards are cheap: a blank card is a new state file; a personalised card is a copy of
one personalised once per session (RSA key generation on the card costs ~0.2 s a key).

The PC/SC fixture (tests marked ``pcsc``) starts ``pcscd --foreground`` only if its socket does
not answer, and stops it at the end if it started it; it starts the emulator process
(``python -m devices.card.cli emulate``: ``jpki-card emulate`` without the installed script) on
vpcd's port 35963 with a temporary state and waits for the card with pyscard's CardRequest.
A missing pcscd, vpcd or pyscard skips those tests on a workstation and fails them in CI.

The enrolment station over PC/SC (``blank_pcsc_card``, ``enrolled_pcsc_card``) uses vpcd's second
reader (port 35964, "Virtual PCD 00 01") with a fresh blank card per test, so the session's
personalised card on 35963 is left alone; the CA is the ``served`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devices.card.client import JpkiCard
from devices.card.emulator import JpkiCardEmulator
from devices.card.face_client import issue_face_aps
from devices.card.face_data import CardSurface, synthetic_my_number, synthetic_security_code
from devices.card.jpki_ap import CertSlot, Key, Pin
from devices.card.transport import InProcessTransport
from jpki.access.authz import Operation, authorize
from tests.components import missing_component

if TYPE_CHECKING:
    from devices.station.ca_client import CaClient
    from devices.station.workflow import EnrolmentResult
    from tests.conftest import LiveServer

AUTH_PIN = "1234"
SIGN_PASSWORD = "ABC123XYZ"
ROOT = Path(__file__).resolve().parents[3]  # the repository


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


# The 券面 applications (reference §4.6): one synthetic holder, issued once per session.
FACE_PIN = "2580"
SURFACE = CardSurface(
    name="山田　花子", address="東京都清瀬市中里一丁目２番３号", birth_date=date(1985, 4, 1),
    sex=2, expiry=date(2035, 4, 1), my_number=synthetic_my_number(random.Random(14)),
    security_code=synthetic_security_code(random.Random(15)), municipality_code="13221")


@pytest.fixture(scope="session")
def issued_template(tmp_path_factory: pytest.TempPathFactory,
                    personalised_template: tuple[Path, Personalisation],
                    issuer_key: rsa.RSAPrivateKey) -> Path:
    """The personalised card with its 券面 applications issued for :data:`SURFACE`."""
    path = tmp_path_factory.mktemp("issued-template") / "card.json"
    shutil.copy(personalised_template[0], path)
    issue_face_aps(JpkiCard(InProcessTransport(JpkiCardEmulator.open(path))), issuer_key,
                   SURFACE, pin=FACE_PIN)
    return path


@pytest.fixture
def issued_card(tmp_path: Path, issued_template: Path) -> EmulatedCard:
    """A personalised card whose 券面 applications hold :data:`SURFACE`; fresh session."""
    path = tmp_path / "card.json"
    shutil.copy(issued_template, path)
    return _card(path)


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
        from devices.card import pcsc, virtual_reader
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
    from devices.card.pcsc import PcscTransport

    transport = PcscTransport.open(pcsc_card.reader)
    try:
        yield JpkiCard(transport)
    finally:
        transport.close()


# --- the enrolment station over PC/SC, on vpcd's second reader ------------------------------

SECOND_PORT = 35964  # vpcd's second reader, "Virtual PCD 00 01" (docs/components.md)
PKCS11_MODULE = Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")
AUTH_TOKEN = "JPKI (User Authentication PIN)"  # OpenSC: one PKCS#11 slot per PIN
SIGN_TOKEN = "JPKI (Digital Signature PIN)"
STATION_AUTH_PIN = "4826"
STATION_SIGN_PASSWORD = "KIYOSE2026"
# Pattern B (reference §5): in person, two photo documents.
IN_PERSON_B: dict[str, Any] = {
    "presence": "in_person",
    "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]}


@pytest.fixture(scope="session")
def pcscd_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """pcscd with vpcd for the whole session: reused when it already runs (e.g. started by
    ``pcsc_card``), else started here and stopped at the end of the session."""
    try:
        from devices.card import virtual_reader
    except ImportError as exc:  # pyscard not installed
        missing_component(f"pyscard is not installed: {exc}")
    log = tmp_path_factory.mktemp("pcscd") / "pcscd.log"
    try:
        with virtual_reader.pcscd_running(log=log):
            yield
    except virtual_reader.ComponentMissing as exc:
        missing_component(str(exc))


@dataclass(frozen=True)
class BlankPcscCard:
    """A blank card (no keys, no certificates, no PINs) in "Virtual PCD 00 01", trusting the
    public half of ``issuer_key``; ``process`` is its emulator (kill it to pull the card)."""

    reader: str
    state: Path
    log: Path
    process: subprocess.Popen[bytes]


@pytest.fixture
def blank_pcsc_card(pcscd_service: None, tmp_path: Path,
                    issuer_public_pem: bytes) -> Iterator[BlankPcscCard]:
    from devices.card import virtual_reader

    public = tmp_path / "issuer.pub.pem"
    public.write_bytes(issuer_public_pem)
    state, log = tmp_path / "blank-card.json", tmp_path / "emulator-35964.log"
    try:
        with virtual_reader.emulator_running(state, issuer_public_key=public, port=SECOND_PORT,
                                             log=log, env=_child_env()) as process:
            yield BlankPcscCard(virtual_reader.VPCD_PORTS[SECOND_PORT], state, log, process)
    except virtual_reader.ComponentMissing as exc:
        missing_component(str(exc))


@pytest.fixture(scope="session")
def opensc_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for OpenSC's tools: ``OPENSC_CONF`` names a private file that puts the
    jpki driver first (docs/components.md)."""
    for tool in ("opensc-tool", "pkcs15-tool", "pkcs11-tool"):
        if shutil.which(tool) is None:
            missing_component(f"OpenSC is not installed: no {tool} (apt-get install opensc)")
    if not PKCS11_MODULE.exists():
        missing_component(f"OpenSC's PKCS#11 module {PKCS11_MODULE} is missing")
    conf = tmp_path_factory.mktemp("opensc") / "opensc.conf"
    conf.write_text("app default {\n    card_drivers = jpki, default;\n}\n")
    return {**os.environ, "OPENSC_CONF": str(conf)}


@pytest.fixture
def station_ca(served: LiveServer) -> Iterator[CaClient]:
    """The station's only way into the CA: its REST API, with a station client's credentials."""
    from devices.station.ca_client import CaClient
    from jpki.access.principals import Principal
    from jpki.model import ClientRole

    new = served.services.clients.create(
        authorize(Principal.local_operator("pytest"), Operation.CLIENT_CREATE),
        name="Kiyose counter", role=ClientRole.STATION)
    with CaClient(served.url, new.client.client_id, new.client_secret) as ca:
        yield ca


def register_resident(served: LiveServer, birth: date = date(1990, 1, 2)) -> str:
    from jpki.access.principals import Principal

    return served.services.residents.register(
        authorize(Principal.local_operator("pytest"), Operation.RESIDENT_REGISTER),
        name="山田 太郎", birth_date=birth, sex=1,
        address="東京都清瀬市中里一丁目２番３号", municipality_code="132217").id


@dataclass(frozen=True)
class EnrolledPcscCard:
    """A card the enrolment station personalised over PC/SC with certificates from ``served``."""

    card: BlankPcscCard
    result: EnrolmentResult
    auth: x509.Certificate  # the issued certificates, as the CA knows them
    sign: x509.Certificate


@pytest.fixture
def enrolled_pcsc_card(served: LiveServer, station_ca: CaClient, blank_pcsc_card: BlankPcscCard,
                       issuer_key: rsa.RSAPrivateKey) -> EnrolledPcscCard:
    from devices.card.pcsc import PcscTransport
    from devices.station.workflow import CARD_AUTH, CARD_SIGN, EnrolmentStation

    rid = register_resident(served)
    with PcscTransport.open(blank_pcsc_card.reader, exclusive=True) as transport:
        result = EnrolmentStation(station_ca, JpkiCard(transport), issuer_key).enroll(
            rid, proofing=IN_PERSON_B, auth_pin=STATION_AUTH_PIN,
            sign_pin=STATION_SIGN_PASSWORD)
    return EnrolledPcscCard(blank_pcsc_card, result, issued_certificate(served, result.serials[
        CARD_AUTH]), issued_certificate(served, result.serials[CARD_SIGN]))


def issued_certificate(served: LiveServer, serial: str) -> x509.Certificate:
    """The certificate with ``serial`` as the CA's database holds it."""
    with served.services.uow() as uow:
        row = uow.certificates.get_by_serial(serial)
    assert row is not None and row.der is not None, f"the CA holds no certificate {serial}"
    return x509.load_der_x509_certificate(row.der)


@dataclass(frozen=True)
class OpenscSlot:
    index: int  # position in C_GetSlotList (pyHanko's slot-no)
    slot_id: int  # CK_SLOT_ID (pkcs11-tool --slot)


def opensc_slot(env: dict[str, str], reader: str, token_label: str) -> OpenscSlot:
    """The PKCS#11 slot of OpenSC's module that holds ``token_label`` in ``reader``.

    Every JPKI card has the same two token labels, so with the session's card in
    "Virtual PCD 00 00" a label alone could pick the wrong card: name the slot.
    """
    listing = subprocess.run(["pkcs11-tool", "--module", str(PKCS11_MODULE), "--list-slots"],
                             env=env, capture_output=True, text=True, timeout=60, check=False)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    # "Slot 2 (0x5): Virtual PCD 00 01" followed by "  token label        : JPKI (…)"
    current: tuple[int, int, str] | None = None
    for line in listing.stdout.splitlines():
        if line.startswith("Slot "):
            head, _, description = line.partition(": ")
            number, _, hex_id = head.removeprefix("Slot ").partition(" ")
            current = (int(number), int(hex_id.strip("()"), 16), description.strip())
        elif current is not None and line.strip().startswith("token label"):
            label = line.partition(":")[2].strip()
            if current[2] == reader and label == token_label:
                return OpenscSlot(current[0], current[1])
    raise AssertionError(f"OpenSC shows no token {token_label!r} in {reader!r}:\n"
                         f"{listing.stdout}")
