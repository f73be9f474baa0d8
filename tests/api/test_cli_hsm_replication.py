"""The key-replication ceremony (`jpki hsm transport-key / export-key / import-key`) between two
real SoftHSM tokens: two data directories, each command a process of its own (SoftHSM reads one
SOFTHSM2_CONF per process, tests/api/test_cli.py).

The source is a CA made by `jpki init`; the target starts empty. Where the target joins the
source's database (JPKI_DATABASE_URL), it stands for the second node of a cluster.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from tests.api.test_cli import REPO, _env, copy_data_dir, jpki, jpki_ok

pytestmark = pytest.mark.hsm

CA_KEYS = {"sign-ca-g01", "auth-ca-g01", "sign-ocsp-g01", "auth-ocsp-g01", "audit-mac",
           "client-secret-mac"}


@dataclass(frozen=True)
class Source:
    data_dir: Path


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, softhsm_module: str) -> Source:
    data_dir = tmp_path_factory.mktemp("replication") / "source"
    jpki_ok("init", data_dir=data_dir)
    return Source(data_dir)


@pytest.fixture
def source(pristine: Source, tmp_path: Path) -> Path:
    """A copy of the source CA (a complete, independent CA: database, token, PINs)."""
    return copy_data_dir(pristine.data_dir, tmp_path / "source")


def shared_db(source: Path) -> dict[str, str]:
    """The environment of a node that shares ``source``'s database (a cluster's second node)."""
    return _env(JPKI_DATABASE_URL=f"sqlite:///{source / 'jpki.db'}")


def transport(target: Path, env: dict[str, str] | None = None) -> tuple[Path, str]:
    pem = target.parent / f"{target.name}-transport.pem"
    doc = jpki_ok("hsm", "transport-key", "--out", pem, data_dir=target, env=env)
    return pem, str(doc["fingerprint"])


def export(source: Path, pem: Path, fingerprint: str, *labels: str) -> tuple[Path, Any]:
    bundle = source.parent / "keys.bundle"
    which = list(labels) or ["--all"]
    doc = jpki_ok("hsm", "export-key", *which, "--to", pem, "--fingerprint", fingerprint,
                  "--out", bundle, data_dir=source)
    return bundle, doc


def token_keys(data_dir: Path, env: dict[str, str] | None = None) -> dict[str, bool]:
    """label -> replicable, for every private and secret key of the data directory's token."""
    return {row["label"]: row["replicable"]
            for row in jpki_ok("hsm", "keys", data_dir=data_dir, env=env)}


def refused(run: Any, code: str) -> str:
    assert run.rc == 1, (run.rc, run.out, run.err)
    error = run.error()
    assert error["code"] == code, error
    return str(error["detail"])


def child(data_dir: Path, code: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A Python process with ``data_dir``'s key store open as ``keys`` (and its settings)."""
    prelude = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from api.keystore import open_keystore
        from jpki.authority.recipe import load_recipe
        from jpki.settings import Settings
        settings = Settings(data_dir=Path({str(data_dir)!r}))
        keys = open_keystore(settings, load_recipe(settings.recipe))
    """)
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(code)],
                            env=env or _env(), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_child(data_dir: Path, code: str, env: dict[str, str] | None = None) -> str:
    proc = child(data_dir, code, env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


def audit_rows(db_dir: Path, prefix: str = "hsm.") -> list[tuple[str, str, dict[str, Any]]]:
    with closing(sqlite3.connect(db_dir / "jpki.db")) as db:
        rows = db.execute("SELECT actor, action, payload FROM audit_log WHERE action LIKE ? "
                          "ORDER BY seq", (prefix + "%",)).fetchall()
    return [(actor, action, json.loads(payload)) for actor, action, payload in rows]


# --- the ceremony ----------------------------------------------------------------------------


def test_replicated_keys_sign_on_the_target_and_verify_under_the_ca_certificates(
        source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    env = shared_db(source)
    pem, fingerprint = transport(target, env)
    assert token_keys(target, env) == {"jpki-transport": False}  # never leaves, as it must

    bundle, exported = export(source, pem, fingerprint)
    assert {k["label"] for k in exported["keys"]} == CA_KEYS and exported["audited"] is True
    # Only ciphertext travels: no PEM private key, and no wrapped key is a bare PKCS#8.
    raw = bundle.read_text()
    assert "PRIVATE KEY" not in raw
    for entry in json.loads(raw)["body"]["keys"]:
        assert not base64.b64decode(entry["wrapped_key"]).startswith(b"\x30\x82")

    imported = jpki_ok("hsm", "import-key", bundle, data_dir=target, env=env)
    assert {k["label"] for k in imported["keys"]} == CA_KEYS and imported["unchanged"] == []
    assert imported["bundle_sha256"] == exported["bundle_sha256"]  # what officers compare
    assert imported["audited"] is True  # the audit key came with the bundle
    assert token_keys(target, env) == {**dict.fromkeys(CA_KEYS, True), "jpki-transport": False}

    # The target signs with the CA's keys: a CRL published on the target verifies under the
    # CA certificate of the source's database, and so does a raw token signature.
    out = tmp_path / "crls"
    written = jpki_ok("crl", "publish", "--shard", "132217", "--out", out, data_dir=target,
                      env=env)["written"]
    assert written
    certs = tmp_path / "certs"
    jpki_ok("ca", "export", "--out", certs, data_dir=source)
    for ca in ("sign", "auth"):
        ca_cert = x509.load_pem_x509_certificate((certs / f"{ca}-ca-g01.pem").read_bytes())
        public = ca_cert.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        crl_paths = sorted((out / ca / "g01").glob("*.crl"))
        assert crl_paths, ca
        for crl_path in crl_paths:
            crl = x509.load_der_x509_crl(crl_path.read_bytes())
            assert crl.is_signature_valid(public), crl_path
        signature = run_child(target, f"""
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
            print(keys.rsa_key("{ca}-ca-g01").sign(b"on the target", PKCS1v15(),
                                                     hashes.SHA256()).hex())
            keys.close()
        """)
        public.verify(bytes.fromhex(signature.strip()), b"on the target", PKCS1v15(),
                      hashes.SHA256())
    # The HMAC audit key is the same: the target verifies the chain the source wrote.
    assert "records" in jpki_ok("audit", "verify", data_dir=target, env=env)

    # Audited on the shared chain: who, what, fingerprints; never key material.
    rows = audit_rows(source)
    assert [action for _, action, _ in rows] == ["hsm.keys_exported", "hsm.keys_imported"]
    for actor, _, payload in rows:
        assert actor.startswith("cli:")
        assert payload["transport_key"] == fingerprint
        assert payload["bundle_sha256"] == exported["bundle_sha256"]
        assert "wrapped" not in json.dumps(payload)

    # After the ceremony the transport key goes.
    assert jpki_ok("hsm", "destroy-transport-key", data_dir=target,
                   env=env)["destroyed"] == [fingerprint]
    assert "jpki-transport" not in token_keys(target, env)


def test_a_target_of_its_own_imports_and_any_node_can_be_the_next_source(
        source: Path, tmp_path: Path) -> None:
    """A target with no database yet imports (and says it could not audit); the imported keys
    keep the replicable protection, so a node that has them passes them on to a third token."""
    second, third = tmp_path / "second", tmp_path / "third"
    pem, fingerprint = transport(second)
    bundle, _ = export(source, pem, fingerprint, "sign-ca-g01")
    doc = jpki_ok("hsm", "import-key", bundle, data_dir=second)
    assert doc["audited"] is False
    assert token_keys(second) == {"sign-ca-g01": True, "jpki-transport": False}

    # Joined to the cluster's database, the second node is the source of the next ceremony.
    pem3, fingerprint3 = transport(third)
    onward = tmp_path / "onward.bundle"
    jpki_ok("hsm", "export-key", "sign-ca-g01", "--to", pem3, "--fingerprint", fingerprint3,
            "--out", onward, data_dir=second, env=shared_db(source))
    jpki_ok("hsm", "import-key", onward, data_dir=third)
    assert token_keys(third) == {"sign-ca-g01": True, "jpki-transport": False}
    # Without the database a node has no certificate to send with the key: refused.
    run = jpki("hsm", "export-key", "sign-ca-g01", "--to", pem3, "--fingerprint", fingerprint3,
               "--out", tmp_path / "none.bundle", "--json", data_dir=second)
    refused(run, "ca.not_initialised")
    assert not (tmp_path / "none.bundle").exists()


# --- refusals --------------------------------------------------------------------------------


def test_a_fingerprint_the_officers_did_not_compare_is_refused(source: Path,
                                                                tmp_path: Path) -> None:
    pem, fingerprint = transport(tmp_path / "target")
    bundle = tmp_path / "x.bundle"
    wrong = ("0" if fingerprint[0] != "0" else "1") + fingerprint[1:]
    for given in (wrong, ""):
        run = jpki("hsm", "export-key", "--all", "--to", pem, "--fingerprint", given, "--out",
                   bundle, "--json", data_dir=source)
        assert fingerprint in refused(run, "transport.fingerprint_mismatch")
    assert not bundle.exists()


def test_a_key_made_never_to_leave_is_refused_by_the_token(source: Path, tmp_path: Path) -> None:
    # Made as every key was before replication existed (and as hsm makes any key by default).
    run_child(source, """
        keys.generate_rsa_key("legacy-ca-key")
        keys.close()
    """)
    pem, fingerprint = transport(tmp_path / "target")
    bundle = tmp_path / "x.bundle"
    run = jpki("hsm", "export-key", "sign-ca-g01", "legacy-ca-key", "--to", pem,
               "--fingerprint", fingerprint, "--out", bundle, "--json", data_dir=source)
    detail = refused(run, "key.not_replicable")
    assert "'legacy-ca-key'" in detail and "CKR_KEY_UNEXTRACTABLE" in detail
    assert not bundle.exists()
    assert audit_rows(source)[-1][1:] == ("hsm.export_refused", {
        "transport_key": fingerprint, "reason": "CKR_KEY_UNEXTRACTABLE"})
    assert token_keys(source)["legacy-ca-key"] is False


def test_without_the_officers_trust_the_token_wraps_nothing(source: Path) -> None:
    """The user PIN alone cannot take a CA key out: the token refuses to wrap it under a key
    the SO did not mark trusted, and refuses the user who tries to mark one."""
    out = run_child(source, """
        from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
        from pkcs11.exceptions import AttributeReadOnly, KeyNotWrappable
        from pkcs11.mechanisms import KeyType, Mechanism
        with keys.session() as session:
            ca = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="sign-ca-g01")
            mine = session.generate_key(KeyType.AES, 256, store=False,
                                        capabilities=MechanismFlag.WRAP,
                                        template={Attribute.EXTRACTABLE: True})
            try:
                mine.wrap_key(ca, mechanism=Mechanism.AES_KEY_WRAP_PAD)
                print("wrapped")
            except KeyNotWrappable:
                print("CKR_KEY_NOT_WRAPPABLE")
            try:
                session.generate_key(KeyType.AES, 256, store=False,
                                     capabilities=MechanismFlag.WRAP,
                                     template={Attribute.TRUSTED: True})
                print("trusted")
            except AttributeReadOnly:
                print("CKR_ATTRIBUTE_READ_ONLY")
        keys.close()
    """)
    assert out.split() == ["CKR_KEY_NOT_WRAPPABLE", "CKR_ATTRIBUTE_READ_ONLY"]


def test_a_wrong_security_officer_pin_is_refused(source: Path, tmp_path: Path) -> None:
    pem, fingerprint = transport(tmp_path / "target")
    env = {**_env(), "JPKI_HSM_SO_PIN": "not-the-officers-pin"}
    run = jpki("hsm", "export-key", "--all", "--to", pem, "--fingerprint", fingerprint, "--out",
               tmp_path / "x.bundle", "--json", data_dir=source, env=env)
    assert "security officer PIN" in refused(run, "hsm.unavailable")


def test_a_bundle_for_another_transport_key_is_refused(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    pem, fingerprint = transport(target)
    bundle, _ = export(source, pem, fingerprint, "audit-mac")
    rotated = jpki_ok("hsm", "transport-key", "--rotate", "--out", pem, data_dir=target)
    assert rotated["fingerprint"] != fingerprint
    run = jpki("hsm", "import-key", bundle, "--json", data_dir=target)
    assert fingerprint in refused(run, "bundle.wrong_transport_key")
    assert token_keys(target) == {"jpki-transport": False}


def _tamper(doc: dict[str, Any], how: str) -> None:
    body = doc["body"]
    rsa_entry = next(e for e in body["keys"] if e["kind"] == "rsa")
    hmac_entry = next(e for e in body["keys"] if e["kind"] == "hmac")
    if how == "label":
        rsa_entry["label"] = "sign-ca-g09"
        doc["signatures"]["sign-ca-g09"] = doc["signatures"].pop("sign-ca-g01")
    elif how == "hmac-label":
        hmac_entry["label"] = "audit-mac-2"
    elif how == "wrapped-key":
        wrapped = bytearray(base64.b64decode(hmac_entry["wrapped_key"]))
        wrapped[5] ^= 1
        hmac_entry["wrapped_key"] = base64.b64encode(bytes(wrapped)).decode()
    elif how == "check-value":
        hmac_entry["check_value"] = "00" * 32
    elif how == "mac":
        doc["mac"] = "00" * 16
    elif how == "transfer-key":
        wrapped = bytearray(base64.b64decode(body["wrapped_transfer_key"]))
        wrapped[-1] ^= 1
        body["wrapped_transfer_key"] = base64.b64encode(bytes(wrapped)).decode()
    elif how == "truncated":
        doc.clear()
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["label", "hmac-label", "wrapped-key", "check-value", "mac",
                                 "transfer-key", "truncated"])
def test_a_tampered_bundle_is_refused_and_imports_nothing(source: Path, tmp_path: Path,
                                                          how: str) -> None:
    target = tmp_path / "target"
    pem, fingerprint = transport(target)
    bundle, _ = export(source, pem, fingerprint, "sign-ca-g01", "audit-mac")
    doc = json.loads(bundle.read_text())
    _tamper(doc, how)
    bundle.write_text(json.dumps(doc))
    run = jpki("hsm", "import-key", bundle, "--json", data_dir=target)
    refused(run, "bundle.invalid")
    assert token_keys(target) == {"jpki-transport": False}


def test_a_label_the_target_holds_for_another_key_is_refused(source: Path,
                                                              tmp_path: Path) -> None:
    target = tmp_path / "target"
    pem, fingerprint = transport(target)
    bundle, _ = export(source, pem, fingerprint, "sign-ca-g01", "audit-mac")
    first = jpki_ok("hsm", "import-key", bundle, data_dir=target)
    assert first["unchanged"] == []
    # The same bundle again changes nothing: the token holds those very keys.
    again = jpki_ok("hsm", "import-key", bundle, data_dir=target)
    assert again["keys"] == [] and sorted(again["unchanged"]) == ["audit-mac", "sign-ca-g01"]
    # A key of the same name made on the target itself blocks a bundle, and nothing of the
    # bundle is imported (the other key neither).
    other = tmp_path / "other"
    pem2, fingerprint2 = transport(other)
    run_child(other, """
        keys.generate_hmac_key("audit-mac")
        keys.close()
    """)
    bundle2, _ = export(source, pem2, fingerprint2, "sign-ca-g01", "audit-mac")
    detail = refused(jpki("hsm", "import-key", bundle2, "--json", data_dir=other), "key.exists")
    assert "'audit-mac'" in detail
    assert token_keys(other) == {"jpki-transport": False, "audit-mac": False}


def test_a_certificate_other_than_the_databases_is_refused(pristine: Source, source: Path,
                                                           tmp_path: Path) -> None:
    """A node of another CA (its own database) refuses keys whose certificates it does not
    hold under their labels."""
    other_ca = tmp_path / "other-ca"
    jpki_ok("init", data_dir=other_ca)
    target = tmp_path / "target"
    env = shared_db(other_ca)
    pem, fingerprint = transport(target, env)
    bundle, _ = export(source, pem, fingerprint, "sign-ca-g01")
    run = jpki("hsm", "import-key", bundle, "--json", data_dir=target, env=env)
    assert "'sign-ca-g01'" in refused(run, "bundle.certificate_mismatch")
    assert token_keys(target, env) == {"jpki-transport": False}


# --- kill -9 between steps -------------------------------------------------------------------


def test_a_kill_during_the_import_leaves_pending_objects_the_next_run_removes(
        source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    pem, fingerprint = transport(target)
    bundle, _ = export(source, pem, fingerprint)
    # The import dies by SIGKILL after unwrapping three keys under their pending labels.
    proc = child(target, f"""
        from hsm import replication
        from hsm.key_bundle import parse_bundle
        unwrap, done = replication._unwrap_one, []
        def dying(*args):
            made = unwrap(*args)
            done.append(made)
            if len(done) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return made
        replication._unwrap_one = dying
        bundle = parse_bundle(Path({str(bundle)!r}).read_bytes())
        replication.import_keys(keys, bundle)
    """)
    proc.communicate(timeout=120)
    assert proc.returncode == -9
    left = token_keys(target)
    # No key under a real label: nothing half-imported can be used by mistake.
    assert not set(left) & CA_KEYS
    pending = {label for label in left if label.startswith("jpki-importing:")}
    assert len(pending) == 3, left

    doc = jpki_ok("hsm", "import-key", bundle, data_dir=target)
    assert {k["label"] for k in doc["keys"]} == CA_KEYS
    assert token_keys(target) == {**dict.fromkeys(CA_KEYS, True), "jpki-transport": False}


def test_a_kill_between_two_keys_commits_is_finished_by_the_next_run(
        source: Path, tmp_path: Path) -> None:
    """Killed after the first key took its label and while the second had only its private
    half renamed: the next run completes the second's public half, leaves both as they are
    and imports the rest."""
    target = tmp_path / "target"
    pem, fingerprint = transport(target)
    bundle, _ = export(source, pem, fingerprint, "sign-ca-g01", "auth-ca-g01", "audit-mac")
    proc = child(target, f"""
        from pkcs11.constants import Attribute, ObjectClass
        from hsm import replication
        from hsm.key_bundle import parse_bundle
        commits = []
        def dying(key):
            commits.append(key)
            if len(commits) == 2:
                for obj, final in key:
                    if obj.object_class != ObjectClass.PUBLIC_KEY:
                        obj[Attribute.LABEL] = final
                os.kill(os.getpid(), signal.SIGKILL)
            for obj, final in key:
                obj[Attribute.LABEL] = final
        replication._commit = dying
        bundle = parse_bundle(Path({str(bundle)!r}).read_bytes())
        replication.import_keys(keys, bundle)
    """)
    proc.communicate(timeout=120)
    assert proc.returncode == -9
    left = token_keys(target)
    assert {"sign-ca-g01", "auth-ca-g01"} <= set(left) and "audit-mac" not in left

    doc = jpki_ok("hsm", "import-key", bundle, data_dir=target)
    assert [k["label"] for k in doc["keys"]] == ["audit-mac"]
    assert sorted(doc["unchanged"]) == ["auth-ca-g01", "sign-ca-g01"]
    assert token_keys(target) == {"sign-ca-g01": True, "auth-ca-g01": True, "audit-mac": True,
                                  "jpki-transport": False}
    # Each RSA key has its public half back under its label (the one the kill left pending).
    publics = run_child(target, """
        from pkcs11.constants import Attribute, ObjectClass
        with keys.session() as session:
            print(sorted(o[Attribute.LABEL] for o in session.get_objects(
                {Attribute.CLASS: ObjectClass.PUBLIC_KEY})))
        keys.close()
    """)
    assert publics.strip() == str(["auth-ca-g01", "jpki-transport", "sign-ca-g01"])


def test_a_kill_during_the_export_leaves_nothing_on_the_source(source: Path,
                                                              tmp_path: Path) -> None:
    """The trusted transport key and the transfer key are session objects: a source killed
    after the officer's step keeps no trusted key and no transfer key."""
    pem, _ = transport(tmp_path / "target")
    before = run_child(source, """
        with keys.session() as session:
            print(len(list(session.get_objects())))
        keys.close()
    """)
    code = f"""
        keys.close()
        from hsm import replication, session_login
        from hsm.keystore import TokenConfig
        from hsm.transport_key import TransportKey
        def dying(path, handle):
            os.kill(os.getpid(), signal.SIGKILL)
        session_login.logout = dying  # right after the SO made the trusted keys
        transport = TransportKey.from_pem(Path({str(pem)!r}).read_bytes())
        config = TokenConfig(keys.config.module_path, keys.config.token_label,
                             settings.user_pin())
        replication.export_keys(config, settings.so_pin(),
                                [replication.ExportItem("sign-ca-g01")], transport)
    """
    proc = child(source, code)
    proc.communicate(timeout=120)
    assert proc.returncode == -9
    after = run_child(source, """
        from pkcs11.constants import Attribute
        with keys.session() as session:
            objects = list(session.get_objects())
            print(len(objects))
            print(sum(bool(o[Attribute.TRUSTED]) for o in objects
                      if o.object_class.name in ("PUBLIC_KEY", "SECRET_KEY")))
        keys.close()
    """)
    assert after.split() == [before.strip(), "0"]
    assert not os.path.exists(tmp_path / "keys.bundle")
