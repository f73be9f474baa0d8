"""The reference phone through its whole life cycle, over the CA's real REST API (uvicorn):
a card enrolled at a station, a mobile application signed with it, a relying party reading the
phone like a card, a lost phone held by the call centre, found and lifted, checked in, and sold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devices.card.client import JpkiCard
from devices.card.emulator.card import JpkiCardEmulator
from devices.card.errors import SecurityStatusNotSatisfied
from devices.card.jpki_ap import TOKEN_LABEL_ANDROID, CertSlot, Pin
from devices.card.transport import InProcessTransport
from devices.phone.app import CaAnswered, PhoneApp, create_phone, issuer_key_path
from devices.station.ca_client import CaClient
from devices.station.workflow import EnrolmentStation
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.model import CertKind, ClientRole

pytestmark = pytest.mark.hsm
CA_OPERATOR = Principal.local_operator("test")
CREATE_CLIENT = authorize(CA_OPERATOR, Operation.CLIENT_CREATE)
READ_CERTIFICATE = authorize(CA_OPERATOR, Operation.CERTIFICATE_READ)
REGISTER_RESIDENT = authorize(CA_OPERATOR, Operation.RESIDENT_REGISTER)
IN_PERSON_B = {"presence": "in_person",
               "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]}


REPO = Path(__file__).resolve().parents[3]  # the repository


def phone_command() -> list[str]:
    """`jpki-phone`, the phone's own console script, else its module."""
    script = Path(sys.executable).parent / "jpki-phone"
    return [str(script)] if script.exists() else [sys.executable, "-m", "devices.phone.cli"]


def cli_env() -> dict[str, str]:
    # A developer's JPKI_* variables must not leak into the command.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JPKI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def token(emulator: JpkiCardEmulator) -> JpkiCard:
    return JpkiCard(InProcessTransport(emulator))


@pytest.fixture
def enrolled_card(served, tmp_path):
    """A resident's card, personalised by a station through the API."""
    issuer = rsa.generate_private_key(65537, 2048)
    card = JpkiCardEmulator.create(tmp_path / "card.json", issuer.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    services = served.services
    rid = services.residents.register(REGISTER_RESIDENT, name="山田 太郎",
                                      birth_date=date(1990, 1, 2), sex=1, address="東京都清瀬市",
                                      municipality_code="132217").id
    station = services.clients.create(CREATE_CLIENT, name="counter", role=ClientRole.STATION)
    with CaClient(served.url, station.client.client_id, station.client_secret) as ca:
        EnrolmentStation(ca, token(card), issuer).enroll(
            rid, proofing=IN_PERSON_B, auth_pin="1234", sign_pin="CARD2026")
    return rid, card


def wait_for(check, seconds: float = 1.0):
    """OCSP must reflect a status change within a second of it."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


@pytest.mark.timing
def test_the_phone_through_its_life_cycle(served, enrolled_card, tmp_path):
    rid, card = enrolled_card
    phone_state = tmp_path / "phone.json"
    se_emulator = create_phone(phone_state, "android")
    issuer = serialization.load_pem_private_key(issuer_key_path(phone_state).read_bytes(), None)
    assert isinstance(issuer, rsa.RSAPrivateKey)
    phone = PhoneApp(api=served.url, se=token(se_emulator), issuer_key=issuer,
                     device_ref="pixel-8a")

    # 1. Apply with the card (its signing password), the phone gets both certificates.
    serials = phone.apply(token(card), card_password="CARD2026", auth_pin="4321",
                          sign_password="PHONE99")
    assert set(serials) == {CertKind.MOBILE_SIGN.value, CertKind.MOBILE_AUTH.value}
    assert phone.status(auth_pin="4321", sign_password="PHONE99") == {
        "mobile_auth": "good", "mobile_sign": "good"}

    # 1b. `jpki-phone status` on the default (Android) platform, in a process of its own: a
    #     fresh secure-element session in which nothing is verified — the auth certificate is
    #     read only after the auth PIN (reference §4.3), which the command asks for.
    status = subprocess.run(
        [*phone_command(), "status", "--state", str(phone_state), "--api", served.url,
         "--device", "pixel-8a", "--auth-pin", "4321", "--json"],
        capture_output=True, text=True, timeout=120, check=False, env=cli_env())
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {"mobile_auth": "good"}
    fresh = PhoneApp(api=served.url, se=token(JpkiCardEmulator.open(phone_state)),
                     issuer_key=issuer, device_ref="pixel-8a")
    assert fresh.status(auth_pin="4321", sign_password="PHONE99") == {
        "mobile_auth": "good", "mobile_sign": "good"}

    # 2. A relying party's reader sees a JPKI-AP token with the phone's label; on an Android
    #    token the auth certificate too is behind its PIN (reference §4.3).
    reader = token(JpkiCardEmulator.open(phone_state))
    reader.select_jpki_ap()
    assert reader.token_label() == TOKEN_LABEL_ANDROID
    with pytest.raises(SecurityStatusNotSatisfied):
        reader.read_certificate(CertSlot.AUTH)
    reader.verify_pin(Pin.AUTH, "4321")
    auth = reader.read_certificate(CertSlot.AUTH)
    assert format(auth.serial_number, "x") == serials["mobile_auth"]

    # 3. Lost: the call centre holds both; OCSP says so within a second.
    centre = served.services.clients.create(CREATE_CLIENT, name="call centre",
                                            role=ClientRole.CALLCENTER)
    r = httpx.post(served.url + "/v1/callcenter/holds", json={"resident_id": rid},
                   auth=(centre.client.client_id, centre.client_secret))
    assert r.status_code == 200 and len(r.json()["held"]) == 2
    held = wait_for(lambda: phone.status(auth_pin="4321", sign_password="PHONE99") == {
        "mobile_auth": "revoked (certificateHold)", "mobile_sign": "revoked (certificateHold)"})
    assert held

    # 4. Found: the holder lifts the suspension from the phone.
    new = phone.lift_suspension(phone.device_id, auth_pin="4321", sign_password="PHONE88")
    assert new["mobile_sign"] != serials["mobile_sign"]
    assert wait_for(lambda: phone.status(auth_pin="4321", sign_password="PHONE88") == {
        "mobile_auth": "good", "mobile_sign": "good"})

    # 5. A check-in, then the phone is sold: the holder revokes it.
    assert phone.check_in(phone.device_id, auth_pin="4321")["device_id"] == phone.device_id
    revoked = phone.revoke(phone.device_id, auth_pin="4321", reason="sale")
    assert {r["serial"] for r in revoked} == {serials["mobile_auth"], new["mobile_sign"]}
    assert wait_for(lambda: phone.status(auth_pin="4321", sign_password="PHONE88") == {
        "mobile_auth": "revoked (cessationOfOperation)",
        "mobile_sign": "revoked (cessationOfOperation)"})
    # The card's own certificates are untouched.
    holder_card = token(card)
    holder_card.select_jpki_ap()
    card_auth = format(holder_card.read_certificate(CertSlot.AUTH).serial_number, "x")
    assert served.services.certificates.show(READ_CERTIFICATE, card_auth).status == "good"
    with pytest.raises(CaAnswered) as info:
        phone.check_in(phone.device_id, auth_pin="4321")
    assert info.value.ca_code == "mobile.signer_refused"
