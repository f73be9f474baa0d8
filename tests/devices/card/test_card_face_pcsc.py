"""The 券面 applications through the real PC/SC stack: pyscard → pcscd → vpcd → ``jpki-card
emulate`` (reference §4.6).

The session's card (``pcsc_card``, "Virtual PCD 00 00") gets its 券面 applications issued over
PC/SC once for this module; ``jpki-card pin-status`` then reads every counter as an open-source
reader does. ``jpki-card issue-face`` is run as a command on a blank card in the second reader.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devices.card import face_aps
from devices.card.client import JpkiCard
from devices.card.errors import SecurityStatusNotSatisfied, WrongPin
from devices.card.face_aps import FaceAp
from devices.card.face_client import FaceApClient, issue_face_aps
from tests.devices.card.conftest import (
    FACE_PIN,
    ROOT,
    SURFACE,
    BlankPcscCard,
    PcscCard,
    _child_env,
)

pytestmark = pytest.mark.pcsc

COUNTERS_ISSUED = [("券面事項入力補助AP", "0011", 3), ("券面事項入力補助AP", "0014", 10),
                   ("券面事項入力補助AP", "0015", 10), ("券面事項確認AP", "0013", 10),
                   ("券面事項確認AP", "0012", 10), ("券面事項確認AP", "0011", 10)]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devices.card.cli", *args], cwd=ROOT,
                          env=_child_env(), capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture(scope="module")
def issued_pcsc_card(pcsc_card: PcscCard, issuer_key: rsa.RSAPrivateKey) -> Iterator[PcscCard]:
    from devices.card.pcsc import PcscTransport

    with PcscTransport.open(pcsc_card.reader, exclusive=True) as transport:
        issue_face_aps(JpkiCard(transport), issuer_key, SURFACE, pin=FACE_PIN)
    yield pcsc_card


@pytest.fixture
def face_client(issued_pcsc_card: PcscCard) -> Iterator[FaceApClient]:
    from devices.card.pcsc import PcscTransport

    with PcscTransport.open(issued_pcsc_card.reader) as transport:
        yield FaceApClient(JpkiCard(transport))


def test_pin_status_command_reads_every_counter(issued_pcsc_card: PcscCard) -> None:
    result = cli("pin-status", "--reader", issued_pcsc_card.reader, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    counters = [(c["application"], c["ef"], c["retries"]) for c in json.loads(result.stdout)]
    assert counters == [*COUNTERS_ISSUED, ("公的個人認証AP", "0018", 3),
                        ("公的個人認証AP", "001B", 5)]
    text = cli("pin-status", "--reader", issued_pcsc_card.reader)
    assert text.returncode == 0, text.stderr
    assert "券面事項入力補助AP 暗証番号 (EF 0011): 3" in text.stdout.splitlines()


def test_reading_and_counting_down_over_pcsc(face_client: FaceApClient,
                                             issuer_key: rsa.RSAPrivateKey) -> None:
    face_client.select(FaceAp.TEXT)
    with pytest.raises(SecurityStatusNotSatisfied):
        face_client.read_basic4()
    with pytest.raises(WrongPin) as wrong:
        face_client.verify(face_aps.TEXT_PIN, "0000")
    assert wrong.value.retries_left == 2
    assert face_client.retries(face_aps.TEXT_PIN) == 2
    face_client.verify(face_aps.TEXT_PIN, FACE_PIN)
    assert face_client.retries(face_aps.TEXT_PIN) == 3  # a correct PIN resets the counter
    assert face_client.read_my_number() == SURFACE.my_number
    assert face_client.read_basic4().address == SURFACE.address
    face_client.select(FaceAp.SURFACE)
    face_client.verify(face_aps.SURFACE_CODE_A, SURFACE.my_number)
    face = face_client.read_card_face()  # ~1.7 KB: several READ BINARYs through pcscd
    face.verify(issuer_key.public_key())
    assert face.photo.startswith(b"\x89PNG")


def test_issue_face_command_on_a_blank_card(blank_pcsc_card: BlankPcscCard, tmp_path: Path,
                                            issuer_key: rsa.RSAPrivateKey) -> None:
    before = cli("pin-status", "--reader", blank_pcsc_card.reader, "--json")
    assert before.returncode == 0, before.stderr
    assert all(c["retries"] is None for c in json.loads(before.stdout))  # nothing set yet

    key = tmp_path / "issuer.pem"
    key.write_bytes(issuer_key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    holder = tmp_path / "holder.json"
    holder.write_text(json.dumps({"name": SURFACE.name, "address": SURFACE.address,
                                  "birth_date": "1985-04-01", "sex": 2,
                                  "expiry": "2035-04-01", "municipality_code": "13221"},
                                 ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "face.json"
    bad = cli("issue-face", "--reader", blank_pcsc_card.reader, "--issuer-key", str(key),
              "--holder", str(holder), "--out", str(out), "--pin", "12345")
    assert bad.returncode == 1 and "card.pin_format" in bad.stderr and not out.exists()
    done = cli("issue-face", "--reader", blank_pcsc_card.reader, "--issuer-key", str(key),
               "--holder", str(holder), "--out", str(out), "--pin", "9731", "--seed", "7")
    assert done.returncode == 0, done.stdout + done.stderr
    face = json.loads(out.read_text())
    assert face_aps.is_valid_my_number(face["my_number"])
    assert face["code_b"] == "600401" + "2035" + face["security_code"]
    assert face["my_number"] not in done.stdout + done.stderr
    after = cli("pin-status", "--reader", blank_pcsc_card.reader, "--json")
    counters = [(c["application"], c["ef"], c["retries"]) for c in json.loads(after.stdout)]
    assert counters == [*COUNTERS_ISSUED, ("公的個人認証AP", "0018", None),
                        ("公的個人認証AP", "001B", None)]

    from devices.card.pcsc import PcscTransport

    with PcscTransport.open(blank_pcsc_card.reader) as transport:
        client = FaceApClient(JpkiCard(transport))
        client.select(FaceAp.TEXT)
        client.verify(face_aps.TEXT_CODE_A, face["my_number"])
        assert client.read_my_number() == face["my_number"]
    log = blank_pcsc_card.log.read_text()
    assert face["my_number"] not in log and "9731" not in log
