"""The enrolment station end to end: a card (the emulator, in-process) and the CA's REST API
served by uvicorn — the station's only way into the CA."""

from __future__ import annotations

from datetime import date

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devices.card.client import JpkiCard
from devices.card.emulator.card import JpkiCardEmulator
from devices.card.errors import CardRemoved, InvalidPinFormat, PinBlocked, WrongPin
from devices.card.jpki_ap import CertSlot, Pin
from devices.card.transport import InProcessTransport
from devices.station.ca_client import CaClient, CaRefused
from devices.station.workflow import CARD_AUTH, CARD_SIGN, EnrolmentFailed, EnrolmentStation
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.model import ClientRole

pytestmark = pytest.mark.hsm

IN_PERSON_B = {"presence": "in_person",
               "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]}
CA_OPERATOR = Principal.local_operator("test")
CREATE_CLIENT = authorize(CA_OPERATOR, Operation.CLIENT_CREATE)
READ_CERTIFICATE = authorize(CA_OPERATOR, Operation.CERTIFICATE_READ)
REGISTER_RESIDENT = authorize(CA_OPERATOR, Operation.RESIDENT_REGISTER)


@pytest.fixture(scope="module")
def issuer_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture
def card(tmp_path, issuer_key):
    pem = issuer_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return JpkiCardEmulator.create(tmp_path / "card.json", pem)


class PullableTransport(InProcessTransport):
    """A reader from which the card is pulled out at the n-th UPDATE BINARY."""

    def __init__(self, card, pull_at_write: int | None = None) -> None:
        super().__init__(card)
        self.writes = 0
        self.pull_at_write = pull_at_write

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[1] == 0xD6:
            self.writes += 1
            if self.pull_at_write is not None and self.writes >= self.pull_at_write:
                raise CardRemoved("the card was removed")
        return super().transmit(apdu)


@pytest.fixture
def station_client(served):
    new = served.services.clients.create(CREATE_CLIENT, name="Kiyose counter",
                                         role=ClientRole.STATION)
    with CaClient(served.url, new.client.client_id, new.client_secret) as ca:
        yield ca


def resident(served, birth=date(1990, 1, 2)) -> str:
    return served.services.residents.register(
        REGISTER_RESIDENT, name="山田 太郎", birth_date=birth, sex=1, address="東京都清瀬市",
        municipality_code="132217").id


def status(served, serial):
    view = served.services.certificates.show(READ_CERTIFICATE, serial)
    return view.status, view.revocation_reason


def test_enrolment_personalises_the_card(served, station_client, card, issuer_key):
    rid = resident(served)
    station = EnrolmentStation(station_client, JpkiCard(InProcessTransport(card)), issuer_key)
    result = station.enroll(rid, proofing=IN_PERSON_B, auth_pin="1234", sign_pin="ABC123")
    assert set(result.serials) == {CARD_AUTH, CARD_SIGN} and result.proofing_pattern == "B"
    assert [name for name, _ in result.steps] == [
        "check PIN formats", "record identity proofing", "authenticate as issuer",
        "generate key pairs on the card", "issue certificates", "write certificates",
        "set PINs", "read back and verify", "confirm delivery"]
    # What a relying party's reader sees: a card holding both certificates and the CAs.
    reader = JpkiCard(InProcessTransport(JpkiCardEmulator.open(card.path)))
    reader.select_jpki_ap()
    assert reader.availability().sign and reader.availability().auth
    auth = reader.read_certificate(CertSlot.AUTH)
    assert format(auth.serial_number, "x") == result.serials[CARD_AUTH]
    assert reader.read_certificate(CertSlot.AUTH_CA).subject == auth.issuer
    reader.verify_pin(Pin.SIGN, "abc123")  # clients upper-case the password
    assert format(reader.read_certificate(CertSlot.SIGN).serial_number, "x") == \
        result.serials[CARD_SIGN]
    with served.services.uow() as uow:
        for serial in result.serials.values():
            assert uow.certificates.get_by_serial(serial).delivered_at is not None
    assert station.status(sign_pin="ABC123")["certificates"][CARD_SIGN]["status"] == "good"


def test_no_signing_key_or_certificate_under_15(served, station_client, card, issuer_key):
    rid = resident(served, birth=date(2016, 5, 5))
    station = EnrolmentStation(station_client, JpkiCard(InProcessTransport(card)), issuer_key)
    result = station.enroll(rid, proofing=IN_PERSON_B, auth_pin="4321")
    assert set(result.serials) == {CARD_AUTH}
    reader = JpkiCard(InProcessTransport(JpkiCardEmulator.open(card.path)))
    reader.select_jpki_ap()
    assert reader.availability().auth and not reader.availability().sign


def test_pin_formats_are_checked_before_anything(served, station_client, card, issuer_key):
    rid = resident(served)
    station = EnrolmentStation(station_client, JpkiCard(InProcessTransport(card)), issuer_key)
    for auth, sign in (("12345", "ABC123"), ("1234", "ABCDEF"), ("1234", "12345"),
                       ("1234", "AB12"), ("12a4", "ABC123")):
        with pytest.raises(InvalidPinFormat) as info:
            station.enroll(rid, proofing=IN_PERSON_B, auth_pin=auth, sign_pin=sign)
        assert auth not in str(info.value) and sign not in str(info.value)
    assert card.apdu_count == 0
    with served.services.uow() as uow:
        assert uow.certificates.for_resident(rid) == []


def test_insufficient_proofing_stops_before_the_card(served, station_client, card, issuer_key):
    rid = resident(served)
    station = EnrolmentStation(station_client, JpkiCard(InProcessTransport(card)), issuer_key)
    with pytest.raises(CaRefused) as info:
        station.enroll(rid, proofing={"presence": "in_person", "applicant_documents": [
            {"type": "health_insurance_card"}]}, auth_pin="1234", sign_pin="ABC123")
    assert info.value.ca_code == "proofing.insufficient"
    assert card.apdu_count == 0


@pytest.mark.parametrize("pull_at_write", [1, 3])
def test_a_card_pulled_out_mid_enrolment_leaves_nothing_unaccounted(served, station_client,
                                                                   card, issuer_key,
                                                                   pull_at_write):
    rid = resident(served)
    transport = PullableTransport(card, pull_at_write=pull_at_write)
    station = EnrolmentStation(station_client, JpkiCard(transport), issuer_key)
    with pytest.raises(EnrolmentFailed) as info:
        station.enroll(rid, proofing=IN_PERSON_B, auth_pin="1234", sign_pin="ABC123")
    serials = info.value.context["serials"].split(",")
    assert len(serials) == 2
    for serial in serials:
        # Revoked as "destroyed before delivery": reason unspecified (reference §3.2).
        assert status(served, serial) == ("revoked", "unspecified")


def test_writes_without_issuer_authentication_are_refused(card):
    from devices.card.errors import SecurityStatusNotSatisfied

    client = JpkiCard(InProcessTransport(card))
    client.select_jpki_ap()
    with pytest.raises(SecurityStatusNotSatisfied):
        client.reset_retry_counter(Pin.AUTH, "1234")


def test_pin_reset_after_proofing(served, station_client, card, issuer_key):
    rid = resident(served)
    station = EnrolmentStation(station_client, JpkiCard(InProcessTransport(card)), issuer_key)
    station.enroll(rid, proofing=IN_PERSON_B, auth_pin="1234", sign_pin="ABC123")
    holder = JpkiCard(InProcessTransport(card))
    holder.select_jpki_ap()
    for _ in range(3):
        with pytest.raises((WrongPin, PinBlocked)):
            holder.verify_pin(Pin.AUTH, "9999")
    station.pin_reset(rid, pin=Pin.AUTH, new_value="5678", proofing=IN_PERSON_B)
    assert holder.pin_retries(Pin.AUTH) == 3
    with served.services.uow() as uow:
        actions = [r.action for r in uow.audit.iterate()]
    assert "card.pin_reset" in actions


def test_renewal_puts_new_keys_and_certificates_on_the_card(served, station_client, card,
                                                            issuer_key, clock):
    rid = resident(served)
    station = EnrolmentStation(station_client, JpkiCard(InProcessTransport(card)), issuer_key)
    first = station.enroll(rid, proofing=IN_PERSON_B, auth_pin="1234", sign_pin="ABC123")
    with served.services.uow() as uow:
        not_after = uow.certificates.get_by_serial(first.serials[CARD_AUTH]).not_after
    from datetime import timedelta

    clock.set(not_after - timedelta(days=40))
    renewed = station.renew(rid, proofing=IN_PERSON_B)
    for kind in (CARD_AUTH, CARD_SIGN):
        assert status(served, first.serials[kind]) == ("revoked", "superseded")
        assert status(served, renewed.serials[kind])[0] == "good"
    reader = JpkiCard(InProcessTransport(card))
    reader.select_jpki_ap()
    assert format(reader.read_certificate(CertSlot.AUTH).serial_number, "x") == \
        renewed.serials[CARD_AUTH]
    reader.verify_pin(Pin.SIGN, "ABC123")  # the PINs did not change
    assert isinstance(reader.read_certificate(CertSlot.SIGN), x509.Certificate)
