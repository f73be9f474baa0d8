"""``jpki-card issuer-key`` and the argument checks of ``jpki-card emulate`` (the running emulator
is exercised through pcscd in test_card_pcsc.py)."""

from __future__ import annotations

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
