"""`jpki pin-reset …` and kiosk clients at the CLI (architecture §7.1), as scripts run them — a
subprocess per command on its own data directory (see tests/api/test_cli.py)."""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.api.test_cli import Base, base, copy_data_dir, jpki, jpki_ok, tools  # noqa: F401

pytestmark = pytest.mark.hsm


def _spki_sha256(public: rsa.RSAPublicKey) -> str:
    return hashlib.sha256(public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def test_card_key_app_and_kiosk(base: Base, tmp_path: Path) -> None:  # noqa: F811
    d = copy_data_dir(base.data_dir, tmp_path / "ca")
    issuer = rsa.generate_private_key(65537, 2048)
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(issuer.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    public_out = tmp_path / "card-key.pub.pem"
    done = jpki_ok("pin-reset", "card-key", "--import", pem, "--public-out", public_out,
                   data_dir=d)
    # The issuer's key, now in the HSM: the same public key, audited by its fingerprint.
    assert done == {"label": "card-management", "imported": True,
                    "spki_sha256": _spki_sha256(issuer.public_key())}
    loaded = serialization.load_pem_public_key(public_out.read_bytes())
    assert isinstance(loaded, rsa.RSAPublicKey)
    assert _spki_sha256(loaded) == done["spki_sha256"]
    again = jpki("pin-reset", "card-key", data_dir=d)
    assert again.rc == 1 and "pin_reset.card_key_exists" in again.err

    app_key = tmp_path / "app.pub.pem"
    app_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    app = jpki_ok("pin-reset", "app-add", "--name", "Reference app", "--public-key", app_key,
                  data_dir=d)
    assert app["role"] == "holder_app" and app["client_id"].startswith("jpki_")
    weak = tmp_path / "weak.pub.pem"
    weak.write_bytes(rsa.generate_private_key(65537, 1024).public_key().public_bytes(  # noqa: S505
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    refused = jpki("pin-reset", "app-add", "--name", "Weak app", "--public-key", weak, data_dir=d)
    assert refused.rc == 1 and "public_key.invalid" in refused.err

    kiosk = jpki_ok("client", "add", "--name", "Store 0001 MFP 2", "--role", "kiosk",
                    "--scopes", "chain:kombini", data_dir=d)
    assert kiosk["scopes"] == ["chain:kombini"]
    no_chain = jpki("client", "add", "--name", "Stray kiosk", "--role", "kiosk", data_dir=d)
    assert no_chain.rc == 1 and "request.invalid" in no_chain.err
    bare_app = jpki("client", "add", "--name", "Bare app", "--role", "holder_app", data_dir=d)
    assert bare_app.rc == 1 and "pin-reset app-add" in bare_app.err
    assert jpki("client", "suspend", "--client-id", kiosk["client_id"], data_dir=d).rc == 0
    with closing(sqlite3.connect(d / "jpki.db")) as db:
        roles = dict(db.execute("SELECT client_id, role || ':' || status FROM api_clients"))
        keys = db.execute("SELECT client_id FROM holder_app_keys").fetchall()
    assert roles[kiosk["client_id"]] == "kiosk:suspended"
    assert roles[app["client_id"]] == "holder_app:active"
    assert keys == [(app["client_id"],)]
