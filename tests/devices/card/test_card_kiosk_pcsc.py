"""The signing-password reset at a convenience-store kiosk, end to end (architecture §7.1):
holder app → online password → kiosk → card → CA, over HTTP (the ``served`` CA, on SQLite and
PostgreSQL) and PC/SC (pyscard → pcscd → vpcd → ``jpki-card emulate`` on vpcd's second reader).

The card was enrolled by the station and its 券面 applications issued; the CA holds the
card-management key in its HSM (imported from the issuer key the card trusts). The kiosk holds
no key: it relays the CA's authorisation to the card.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select

from devices.card.client import JpkiCard
from devices.card.errors import IssuerAuthenticationFailed, PinBlocked, WrongPin
from devices.card.face_client import issue_face_aps
from devices.card.jpki_ap import Pin
from devices.holder_app.app import FaceMismatch, HolderApp
from devices.kiosk.workflow import STEPS, Kiosk
from devices.reset_ca import ResetCa, ResetRefused
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.model import ClientRole, ClientStatus
from jpki.pin_reset.service import CARD_KEY_LABEL
from jpki.store.tables import audit_log, kiosk_resets, online_passwords
from tests.devices.card.conftest import (
    FACE_PIN,
    STATION_AUTH_PIN,
    STATION_SIGN_PASSWORD,
    SURFACE,
    EnrolledPcscCard,
)

if TYPE_CHECKING:
    from tests.conftest import LiveServer

pytestmark = [pytest.mark.pcsc, pytest.mark.hsm]

NEW_PASSWORD = "KOMBINI2026"
LOCAL = Principal.local_operator("pytest")


@dataclass(frozen=True)
class Parties:
    app: HolderApp
    kiosk_ca: ResetCa
    kiosk_id: str


@pytest.fixture
def parties(served: LiveServer, enrolled_pcsc_card: EnrolledPcscCard,
            issuer_key: rsa.RSAPrivateKey) -> Iterator[Parties]:
    from devices.card.pcsc import PcscTransport

    services = served.services
    # The session's token: imported once, under a label of its own (other tests generate
    # card-management keys the test cards do not trust).
    spki = issuer_key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    label = f"{CARD_KEY_LABEL}-{hashlib.sha256(spki).hexdigest()[:12]}"
    if not services.keys.has_key(label):
        services.keys.import_rsa_key(label, issuer_key)
    services.pin_reset.card_key_label = label
    # Card issuance of the 券面 applications (the station does not write them).
    with PcscTransport.open(enrolled_pcsc_card.card.reader, exclusive=True) as transport:
        issue_face_aps(JpkiCard(transport), issuer_key, SURFACE, pin=FACE_PIN)
    app_key = ec.generate_private_key(ec.SECP256R1())
    app = services.pin_reset.register_app(
        authorize(LOCAL, Operation.CLIENT_CREATE), services.clients, name="Reference app",
        public_key=app_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    kiosk = services.clients.create(authorize(LOCAL, Operation.CLIENT_CREATE),
                                    name="Store 0001 MFP 2", role=ClientRole.KIOSK,
                                    scopes=["chain:kombini"])
    app_ca = ResetCa(served.url, app.client.client_id, app.client_secret)
    kiosk_ca = ResetCa(served.url, kiosk.client.client_id, kiosk.client_secret)
    try:
        yield Parties(HolderApp(app_ca, app.client.client_id, app_key), kiosk_ca,
                      kiosk.client.client_id)
    finally:
        app_ca.close()
        kiosk_ca.close()


def _actions(served: LiveServer) -> list[str]:
    with served.services.uow.engine.connect() as conn:
        return list(conn.execute(select(audit_log.c.action).order_by(audit_log.c.seq)).scalars())


def test_app_online_password_then_kiosk_resets_the_signing_password(
        served: LiveServer, enrolled_pcsc_card: EnrolledPcscCard, parties: Parties) -> None:
    from devices.card.pcsc import PcscTransport

    reader = enrolled_pcsc_card.card.reader
    with PcscTransport.open(reader, exclusive=True) as transport:
        card = JpkiCard(transport)
        photo = parties.app.read_card_photo(card, SURFACE.code_b)
        online = parties.app.obtain_online_password(card, auth_pin=STATION_AUTH_PIN,
                                                    code_b=SURFACE.code_b, camera_photo=photo)
    assert online.card == format(enrolled_pcsc_card.auth.serial_number, "x")
    assert online.value not in repr(online)

    # The holder forgot the signing password and spent tries on it.
    with PcscTransport.open(reader, exclusive=True) as transport:
        card = JpkiCard(transport)
        card.select_jpki_ap()
        with pytest.raises(WrongPin):
            card.verify_pin(Pin.SIGN, "FORGOT1")
    with PcscTransport.open(reader, exclusive=True) as transport:
        result = Kiosk(parties.kiosk_ca, JpkiCard(transport)).reset_signing_password(
            auth_pin=STATION_AUTH_PIN, online_password=online.value.lower(),
            new_password=NEW_PASSWORD)
    assert [name for name, _ in result.steps] == list(STEPS)

    with PcscTransport.open(reader, exclusive=True) as transport:
        card = JpkiCard(transport)
        card.select_jpki_ap()
        assert card.pin_retries(Pin.SIGN) == 5  # a full counter again
        card.verify_pin(Pin.SIGN, NEW_PASSWORD)
        with pytest.raises(WrongPin):
            card.verify_pin(Pin.SIGN, STATION_SIGN_PASSWORD)  # the old one is gone
    with served.services.uow.engine.connect() as conn:
        reset = conn.execute(select(kiosk_resets)).one()
        password = conn.execute(select(online_passwords)).one()
    assert reset.status == "done" and reset.kiosk_client_id == parties.kiosk_id
    assert password.status == "consumed" and password.consumed_by == parties.kiosk_id
    assert online.value not in password.password_hash  # a scrypt hash only
    actions = _actions(served)
    assert actions[-3:] == ["pin_reset.online_password_issued", "pin_reset.reset_authorised",
                            "pin_reset.reset_done"]

    # The password is single use: the same one again is refused, and the card is untouched.
    with (PcscTransport.open(reader, exclusive=True) as transport,
          pytest.raises(ResetRefused) as refused):
        Kiosk(parties.kiosk_ca, JpkiCard(transport)).reset_signing_password(
            auth_pin=STATION_AUTH_PIN, online_password=online.value, new_password="ANOTHER99")
    assert refused.value.status == 422
    assert refused.value.ca_code == "pin_reset.no_online_password"
    with PcscTransport.open(reader, exclusive=True) as transport:
        card = JpkiCard(transport)
        card.select_jpki_ap()
        card.verify_pin(Pin.SIGN, NEW_PASSWORD)
    assert _actions(served)[-1] == "pin_reset.refused"


def test_refusals_at_the_kiosk_change_nothing_on_the_card(
        served: LiveServer, enrolled_pcsc_card: EnrolledPcscCard, parties: Parties) -> None:
    """A wrong 4-digit PIN is counted down by the card and reported; a wrong online password
    spends one of its tries at the CA; a suspended kiosk is refused; a face that does not match
    gets no password; an authorisation for another challenge is refused by the card."""
    from devices.card.pcsc import PcscTransport

    reader = enrolled_pcsc_card.card.reader
    with PcscTransport.open(reader, exclusive=True) as transport:
        card = JpkiCard(transport)
        with pytest.raises(FaceMismatch):
            parties.app.obtain_online_password(card, auth_pin=STATION_AUTH_PIN,
                                               code_b=SURFACE.code_b, camera_photo=b"not me")
        photo = parties.app.read_card_photo(card, SURFACE.code_b)
        online = parties.app.obtain_online_password(card, auth_pin=STATION_AUTH_PIN,
                                                    code_b=SURFACE.code_b, camera_photo=photo)
    with PcscTransport.open(reader, exclusive=True) as transport:
        kiosk = Kiosk(parties.kiosk_ca, JpkiCard(transport))
        with pytest.raises(WrongPin) as wrong:
            kiosk.reset_signing_password(auth_pin="0000", online_password=online.value,
                                         new_password=NEW_PASSWORD)
        assert wrong.value.sw == 0x63C2
        assert _actions(served)[-1] == "pin_reset.refused"
        other = "ABCD-EFGH-JKMN" if online.value != "ABCDEFGHJKMN" else "NMKJ-HGFE-DCBA"
        with pytest.raises(ResetRefused) as refused:
            kiosk.reset_signing_password(auth_pin=STATION_AUTH_PIN, online_password=other,
                                         new_password=NEW_PASSWORD)
        assert refused.value.ca_code == "pin_reset.online_password_wrong"
    with served.services.uow.engine.connect() as conn:
        assert conn.execute(select(online_passwords.c.tries_left)).scalar_one() == 2
    with PcscTransport.open(reader, exclusive=True) as transport:
        card = JpkiCard(transport)
        card.select_jpki_ap()
        assert card.pin_retries(Pin.AUTH) == 3  # the correct PIN since reset the counter
        card.verify_pin(Pin.SIGN, STATION_SIGN_PASSWORD)  # unchanged
        # An authorisation that is not the CA's for this challenge: 6300, nothing reset.
        card.get_challenge(32)
        with pytest.raises(IssuerAuthenticationFailed):
            card.relay_reset_authorisation(b"\x00" * 256)

    # Three wrong PINs lock the auth PIN as on a real card (63 C2, 63 C1, 63 C0, then 69 84);
    # each is reported to the CA, which audits the card's refusal by its code only.
    with PcscTransport.open(reader, exclusive=True) as transport:
        kiosk = Kiosk(parties.kiosk_ca, JpkiCard(transport))
        for expected in (WrongPin, WrongPin, WrongPin, PinBlocked):
            with pytest.raises(expected):
                kiosk.reset_signing_password(auth_pin="0000", online_password=online.value,
                                             new_password=NEW_PASSWORD)
    with served.services.uow() as uow:
        codes = [json.loads(r.payload).get("code") for r in uow.audit.iterate()
                 if r.action == "pin_reset.refused"]
    assert codes[-4:] == ["card.wrong_pin"] * 3 + ["card.pin_blocked"]
    with served.services.uow.engine.connect() as conn:  # the online password is untouched
        assert conn.execute(select(online_passwords.c.tries_left)).scalar_one() == 2

    services = served.services
    services.clients.set_status(authorize(LOCAL, Operation.CLIENT_SET_STATUS), parties.kiosk_id,
                                ClientStatus.SUSPENDED)
    with pytest.raises(ResetRefused) as suspended:
        parties.kiosk_ca.challenge("/v1/kiosk/challenges")
    assert (suspended.value.status, suspended.value.ca_code) == (403, "auth.client_suspended")
