"""The individual number never reaches the CA (reference §4.6, architecture §9.7).

A card whose 券面 applications hold a synthetic individual number goes through a full enrolment at
the station (the emulator in-process, the CA's REST API served by uvicorn). Afterwards the number
must appear nowhere on the CA's side: not in any row of any table of its store (the audit log
included), not in any log record of the process, not in any file under the CA's data directory,
and not in any HTTP request the station sent. The station must not even touch the 券面
applications: no APDU of the enrolment selects them.
"""

from __future__ import annotations

import logging
import random
from datetime import date
from pathlib import Path

import httpx
import pytest
import sqlalchemy
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devices.card import face_aps
from devices.card.client import JpkiCard
from devices.card.emulator.card import JpkiCardEmulator
from devices.card.face_aps import SURFACE_AP_AID, TEXT_AP_AID
from devices.card.face_client import FaceApClient, issue_face_aps
from devices.card.face_data import CardSurface, synthetic_my_number, synthetic_security_code
from devices.card.transport import InProcessTransport
from devices.station.ca_client import CaClient
from devices.station.workflow import CARD_AUTH, CARD_SIGN, EnrolmentStation
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.model import ClientRole

pytestmark = pytest.mark.hsm

OPERATOR = Principal.local_operator("test")
IN_PERSON_B = {"presence": "in_person",
               "applicant_documents": [{"type": "drivers_license"}, {"type": "passport"}]}
NAME, ADDRESS, BIRTH = "山田　太郎", "東京都清瀬市中里一丁目２番３号", date(1990, 1, 2)


class RecordingTransport(InProcessTransport):
    def __init__(self, card: JpkiCardEmulator) -> None:
        super().__init__(card)
        self.commands: list[bytes] = []
        self.responses: list[bytes] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.commands.append(apdu)
        response = super().transmit(apdu)
        self.responses.append(response)
        return response


def forms(number: str) -> list[bytes]:
    """The number as text and as the hex a store or a log might render bytes in."""
    raw = number.encode("ascii")
    return [raw, raw.hex().encode(), raw.hex().upper().encode()]


def test_the_individual_number_never_reaches_the_ca(
        served, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture,
        ) -> None:
    issuer = rsa.generate_private_key(65537, 2048)
    number = synthetic_my_number(random.Random(20261202))
    surface = CardSurface(name=NAME, address=ADDRESS, birth_date=BIRTH, sex=1,
                          expiry=date(2035, 1, 2), my_number=number,
                          security_code=synthetic_security_code(random.Random(3)),
                          municipality_code="13221")
    # The card lives outside the CA's data directory: its state file holds the number, as the
    # chip does.
    card_path = tmp_path_factory.mktemp("card") / "card.json"
    emulator = JpkiCardEmulator.create(card_path, issuer.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    # Card issuance (カード発行), before the counter and apart from the CA.
    issue_face_aps(JpkiCard(InProcessTransport(emulator)), issuer, surface, pin="2580")
    emulator.reset()

    requests: list[bytes] = []

    def record(request: httpx.Request) -> None:
        requests.append(str(request.url).encode() + b"\n" + request.read())

    caplog.set_level(logging.DEBUG)
    resident = served.services.residents.register(
        authorize(OPERATOR, Operation.RESIDENT_REGISTER), name=NAME, birth_date=BIRTH, sex=1,
        address=ADDRESS, municipality_code="132217").id
    new = served.services.clients.create(authorize(OPERATOR, Operation.CLIENT_CREATE),
                                         name="Kiyose counter", role=ClientRole.STATION)
    transport = RecordingTransport(emulator)
    http = httpx.Client(base_url=served.url, timeout=30.0, event_hooks={"request": [record]})
    with CaClient(served.url, new.client.client_id, new.client_secret, http=http) as ca:
        station = EnrolmentStation(ca, JpkiCard(transport), issuer)
        result = station.enroll(resident, proofing=IN_PERSON_B, auth_pin="1234",
                                sign_pin="ABC123")
        station.status(sign_pin="ABC123")
    assert set(result.serials) == {CARD_AUTH, CARD_SIGN}

    # The station never touched the 券面 applications, and no answer carried the number.
    selected = [c[5:5 + c[4]] for c in transport.commands if c[1:3] == b"\xa4\x04"]
    assert selected and TEXT_AP_AID not in selected and SURFACE_AP_AID not in selected
    assert not any(f in r for r in transport.responses for f in forms(number))
    assert requests and not any(f in r for r in requests for f in forms(number))

    # The store: every row of every table (the audit log is one of them).
    engine = served.services.uow.engine
    tables = sqlalchemy.MetaData()
    tables.reflect(engine)
    rows = 0
    with engine.connect() as connection:
        for table in tables.sorted_tables:
            for row in connection.execute(sqlalchemy.select(table)):
                rows += 1
                text = repr(tuple(row)).encode("utf-8")
                assert not any(f in text for f in forms(number)), table.name
    assert rows > 0
    with served.services.uow() as uow:
        audit = [repr(r).encode() for r in uow.audit.iterate()]
    assert audit and not any(f in a for a in audit for f in forms(number))

    # The logs of this process (the CA's request log included) and the CA's data directory.
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records).encode()
    assert logged and not any(f in logged for f in forms(number))
    data_dir = Path(served.services.settings.data_dir)
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files and not any(f in p.read_bytes() for p in files for f in forms(number))

    # And the number is on the card, where a reader with the holder's PIN finds it.
    client = FaceApClient(JpkiCard(InProcessTransport(JpkiCardEmulator.open(card_path))))
    client.select(face_aps.FaceAp.TEXT)
    client.verify(face_aps.TEXT_PIN, "2580")
    assert client.read_my_number() == number
