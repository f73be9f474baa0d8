"""``jpki-card issuer-key`` and the argument checks of ``jpki-card emulate`` (the running emulator
is exercised through pcscd in test_card_pcsc.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from devices.card.cli import app
from devices.card.emulator import JpkiCardEmulator

runner = CliRunner()


def test_issuer_key_writes_a_pair_and_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "issuer.pem"
    result = runner.invoke(app, ["issuer-key", "--out", str(out)])
    assert result.exit_code == 0, result.output
    public = tmp_path / "issuer.pub.pem"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(out.read_bytes(), None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    loaded = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(loaded, rsa.RSAPublicKey)
    assert loaded.public_numbers() == private.public_key().public_numbers()
    before = out.read_bytes()
    again = runner.invoke(app, ["issuer-key", "--out", str(out)])
    assert again.exit_code == 1
    assert "error: request.invalid" in again.output
    assert out.read_bytes() == before


def test_emulate_refuses_bad_arguments(tmp_path: Path, issuer_public_pem: bytes) -> None:
    state = tmp_path / "card.json"
    result = runner.invoke(app, ["emulate", "--state", str(state)])
    assert result.exit_code == 1 and "needs --issuer-public-key" in result.output
    assert not state.exists()

    not_a_key = tmp_path / "junk.pem"
    not_a_key.write_text("junk")
    result = runner.invoke(app, ["emulate", "--state", str(state),
                                 "--issuer-public-key", str(not_a_key)])
    assert result.exit_code == 1 and "--issuer-public-key" in result.output
    assert not state.exists()

    JpkiCardEmulator.create(state, issuer_public_pem)
    result = runner.invoke(app, ["emulate", "--state", str(state),
                                 "--token-label", "JPKIAPGPSETOKEN"])
    assert result.exit_code == 1 and "is a JPKIAPICCTOKEN2 token" in result.output

    other = tmp_path / "other.pub.pem"
    other.write_bytes(rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    result = runner.invoke(app, ["emulate", "--state", str(state),
                                 "--issuer-public-key", str(other)])
    assert result.exit_code == 1 and "different issuer key" in result.output

    state.write_text("{")
    result = runner.invoke(app, ["emulate", "--state", str(state)])
    assert result.exit_code == 1 and "card.state_invalid" in result.output


def test_issue_face_refuses_a_bad_holder_without_echoing_it(tmp_path: Path) -> None:
    # Refused before any reader is opened; the error names the problem, never the value
    # (architecture §9.7).
    holder = tmp_path / "holder.json"
    out = tmp_path / "face.json"
    key = tmp_path / "issuer.pem"
    key.write_text("unused")
    base = {"name": "山田　花子", "address": "東京都清瀬市中里一丁目２番３号",
            "birth_date": "1985-04-01", "sex": 2, "expiry": "2035-04-01",
            "municipality_code": "13221"}
    for change, reason in (({"sex": 7}, "ValueError"), ({"birth_date": "1985-13-01"},
                                                        "ValueError"),
                           ({"municipality_code": "132217"}, "ValueError"),
                           ({"name": None}, "missing")):
        document = {k: v for k, v in {**base, **change}.items() if v is not None}
        holder.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
        result = runner.invoke(app, ["issue-face", "--holder", str(holder), "--issuer-key",
                                     str(key), "--out", str(out), "--pin", "1234"])
        assert result.exit_code == 1 and "error: request.invalid: --holder" in result.output
        assert reason in result.output
        for value in ("山田", "清瀬", "1985", "132217"):
            assert value not in result.output
        assert not out.exists()
    holder.write_text(json.dumps(base, ensure_ascii=False), encoding="utf-8")
    out.write_text("{}")
    result = runner.invoke(app, ["issue-face", "--holder", str(holder), "--issuer-key",
                                 str(key), "--out", str(out), "--pin", "1234"])
    assert result.exit_code == 1 and "refusing to overwrite" in result.output
    out.unlink()
    result = runner.invoke(app, ["issue-face", "--holder", str(holder), "--issuer-key",
                                 str(key), "--out", str(out), "--pin", "1234"])
    assert result.exit_code == 1 and "--issuer-key" in result.output and not out.exists()
