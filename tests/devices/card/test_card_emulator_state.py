"""The card's state file: persistence across restarts, what it holds and what it never holds,
atomic replacement, and "a failed write changes nothing" (6581)."""

from __future__ import annotations

import hashlib
import json
import stat

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from devices.card.emulator import CardState, JpkiCardEmulator
from devices.card.errors import CardStateError, WrongPin
from devices.card.jpki_ap import Key, Pin, sha256_digest_info
from tests.devices.card.conftest import AUTH_PIN, SIGN_PASSWORD, EmulatedCard, Personalisation


def test_counters_pins_and_keys_survive_a_restart(card: EmulatedCard,
                                                  personalisation: Personalisation) -> None:
    card.client.select_jpki_ap()
    with pytest.raises(WrongPin):
        card.client.verify_pin(Pin.AUTH, "0000")
    card.client.change_pin(Pin.SIGN, SIGN_PASSWORD, "NEWPASS1")

    again = card.reopen()
    client = again.client
    client.select_jpki_ap()
    assert client.pin_retries(Pin.AUTH) == 2
    with pytest.raises(WrongPin):
        client.verify_pin(Pin.SIGN, SIGN_PASSWORD)
    client.verify_pin(Pin.SIGN, "NEWPASS1")
    message = b"after a restart"
    signature = client.sign(Key.SIGN, sha256_digest_info(hashlib.sha256(message).digest()))
    personalisation.sign_public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_the_session_does_not_survive(card: EmulatedCard) -> None:
    card.client.select_jpki_ap()
    card.client.verify_pin(Pin.AUTH, AUTH_PIN)
    again = card.reopen()
    assert again.sw("00A4020C020017") == "6A82"  # no AP selected after a restart
    assert again.sw("00A4040C0AD392F000260100000001") == "9000"
    assert again.sw("00A4020C020017") == "9000"
    assert again.sw("802A00800401020304" "00") == "6982"  # PIN no longer verified


def test_what_the_file_holds(card: EmulatedCard) -> None:
    document = json.loads(card.path.read_text())
    assert stat.S_IMODE(card.path.stat().st_mode) == 0o600  # it holds private keys
    assert set(document) == {"format", "token_label", "issuer_public_key", "files", "pins",
                             "keys", "applications"}
    assert set(document["pins"]) == {"0018", "001B"}
    assert set(document["keys"]) == {"0017", "001A"}
    assert all(pem.startswith("-----BEGIN PRIVATE KEY-----")
               for pem in document["keys"].values())  # PKCS#8
    text = card.path.read_text()
    for secret in (AUTH_PIN, SIGN_PASSWORD):
        assert f'"{secret}"' not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text  # salted, not bare
    assert "issuer_authenticated" not in text and "verified" not in text


def test_same_pin_different_verifiers(card: EmulatedCard, issuer_key: object) -> None:
    card.client.select_jpki_ap()
    card.client.authenticate_issuer(issuer_key)  # type: ignore[arg-type]
    card.client.reset_retry_counter(Pin.AUTH, AUTH_PIN)
    first = card.emulator.state.pins[Pin.AUTH]
    card.client.reset_retry_counter(Pin.AUTH, AUTH_PIN)
    second = card.emulator.state.pins[Pin.AUTH]
    assert first.salt != second.salt and first.verifier != second.verifier


def test_saves_are_atomic_and_leave_no_temporary_files(card: EmulatedCard) -> None:
    card.client.select_jpki_ap()
    for _ in range(2):
        with pytest.raises(WrongPin):
            card.client.verify_pin(Pin.SIGN, "WRONG1")
    assert sorted(p.name for p in card.path.parent.iterdir()) == ["card.json"]
    assert CardState.load(card.path).pins[Pin.SIGN].retries == 3


def test_a_failed_write_changes_nothing(card: EmulatedCard,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    before = card.path.read_bytes()

    def disk_full(self: CardState, path: object) -> None:
        raise OSError(28, "No space left on device")

    assert card.sw("00A4040C0AD392F000260100000001") == "9000"
    assert card.sw("00A4020C020018") == "9000"
    monkeypatch.setattr(CardState, "save", disk_full)
    assert card.sw("0020008004" + b"0000".hex()) == "6581"  # memory failure
    assert card.sw("00200080") == "63C3"  # the try was not spent, in memory either
    monkeypatch.undo()
    assert card.path.read_bytes() == before
    assert card.sw("0020008004" + b"0000".hex()) == "63C2"


def test_a_corrupt_state_file_is_refused(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "bad.json"
    for content in ("{", "[]", '{"format": "other"}',
                    json.dumps({"format": "jpki-card-state/1", "token_label": "X",
                                "issuer_public_key": "not a key", "files": {}, "pins": {},
                                "keys": {}})):
        path.write_text(content)
        with pytest.raises(CardStateError):
            JpkiCardEmulator.open(path)
    with pytest.raises(CardStateError):
        JpkiCardEmulator.open(path.with_name("missing.json"))


def test_a_state_round_trips_through_json(card: EmulatedCard) -> None:
    state = CardState.load(card.path)
    assert CardState.from_json(state.to_json()) == state
    assert state == card.emulator.state


def test_issuer_key_must_be_rsa_2048(tmp_path: object) -> None:
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    small = rsa.generate_private_key(65537, 1024).public_key()  # noqa: S505 — refused on purpose
    curve = ec.generate_private_key(ec.SECP256R1()).public_key()
    for key in (small, curve):
        pem = key.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        with pytest.raises(ValueError):
            JpkiCardEmulator.create(Path(str(tmp_path)) / "x.json", pem)
    assert not (Path(str(tmp_path)) / "x.json").exists()


def test_private_key_cache_follows_new_keys(card: EmulatedCard, issuer_key: object) -> None:
    client = card.client
    client.select_jpki_ap()
    client.verify_pin(Pin.AUTH, AUTH_PIN)
    client.sign(Key.AUTH, sha256_digest_info(bytes(32)))  # loads and caches the old key
    client.authenticate_issuer(issuer_key)  # type: ignore[arg-type]
    new_public = client.generate_key_pair(Key.AUTH)
    signature = client.sign(Key.AUTH, sha256_digest_info(hashlib.sha256(b"m").digest()))
    new_public.verify(signature, b"m", padding.PKCS1v15(), hashes.SHA256())
