"""OpenSC as an independent JPKI client of the emulator, as separate processes over pcscd.

OpenSC's jpki driver and PKCS#15 emulator (reference §4.1, §4.5 "PKCS#15 objects") must
recognise the card, list its certificates and PINs, and sign through PKCS#11 with a signature
that verifies with the certificate's key. ``OPENSC_CONF`` points to a private file that puts the
jpki driver first (docs/components.md), so the other drivers' probes are skipped.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devices.card.client import JpkiCard
from devices.card.jpki_ap import CertSlot, Pin, sha256_digest_info
from tests.devices.card.conftest import AUTH_PIN, PKCS11_MODULE, SIGN_PASSWORD, PcscCard

pytestmark = pytest.mark.pcsc

AUTH_TOKEN = "JPKI (User Authentication PIN)"  # one PKCS#11 slot per PIN
SIGN_TOKEN = "JPKI (Digital Signature PIN)"


def run(args: Sequence[str], env: dict[str, str], *, check: bool = True,
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def pkcs11(env: dict[str, str], token: str, *args: str, check: bool = True,
           ) -> subprocess.CompletedProcess[str]:
    return run(["pkcs11-tool", "--module", str(PKCS11_MODULE), "--token-label", token, *args],
               env, check=check)


def test_opensc_names_the_jpki_driver(pcsc_card: PcscCard, opensc_env: dict[str, str]) -> None:
    result = run(["opensc-tool", "--reader", pcsc_card.reader, "--name"], opensc_env)
    assert result.stdout.strip() == "jpki"


def test_opensc_picks_jpki_without_a_driver_hint(pcsc_card: PcscCard,
                                                 opensc_env: dict[str, str]) -> None:
    # With the system configuration OpenSC runs the other drivers' probes first (SELECTs of
    # their AIDs with P2 00 and 0C, GET DATA…): every one must be refused, or another driver
    # would claim the card (docs/components.md).
    env = {k: v for k, v in opensc_env.items() if k != "OPENSC_CONF"}
    result = run(["opensc-tool", "--reader", pcsc_card.reader, "--name", "-vvv"], env)
    assert "Using card driver JPKI(Japanese Individual Number Cards)" in result.stdout
    assert result.stdout.strip().splitlines()[-1].endswith("jpki")
    assert result.stderr.count("Outgoing APDU") > 10  # the probes did happen


def test_pkcs15_lists_certificates_and_pins(pcsc_card: PcscCard,
                                            opensc_env: dict[str, str]) -> None:
    listing = run(["pkcs15-tool", "--reader", pcsc_card.reader, "--list-certificates"],
                  opensc_env).stdout
    for label, path in [("User Authentication Certificate", "000a"),
                        ("Digital Signature Certificate", "0001"),
                        ("User Authentication Certificate CA", "000b"),
                        ("Digital Signature Certificate CA", "0002")]:
        assert f"[{label}]" in listing and f"Path           : {path}" in listing
    auth = pcsc_card.personalisation.certificates[CertSlot.AUTH]
    assert f"{auth.serial_number:X}" in listing.replace(" ", "").upper()
    pins = run(["pkcs15-tool", "--reader", pcsc_card.reader, "--list-pins"], opensc_env).stdout
    assert "Tries left     : 3" in pins and "Tries left     : 5" in pins


def _public(certificate: x509.Certificate) -> rsa.RSAPublicKey:
    key = certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def test_pkcs11_signs_with_the_auth_key(pcsc_card: PcscCard, opensc_env: dict[str, str],
                                        tmp_path: Path) -> None:
    message = tmp_path / "message"
    message.write_bytes(b"signed by OpenSC through the emulator")
    signature = tmp_path / "signature"
    pkcs11(opensc_env, AUTH_TOKEN, "--login", "--pin", AUTH_PIN, "--sign", "--id", "01",
           "--mechanism", "SHA256-RSA-PKCS", "--input-file", str(message),
           "--output-file", str(signature))
    public = _public(pcsc_card.personalisation.certificates[CertSlot.AUTH])
    public.verify(signature.read_bytes(), message.read_bytes(), padding.PKCS1v15(),
                  hashes.SHA256())

    # RSA-PKCS with a DigestInfo the caller built: the card pads (P1 00, reference §4.4).
    digest_info = tmp_path / "digest-info"
    digest_info.write_bytes(sha256_digest_info(hashlib.sha256(message.read_bytes()).digest()))
    pkcs11(opensc_env, AUTH_TOKEN, "--login", "--pin", AUTH_PIN, "--sign", "--id", "01",
           "--mechanism", "RSA-PKCS", "--input-file", str(digest_info),
           "--output-file", str(signature))
    public.verify(signature.read_bytes(), message.read_bytes(), padding.PKCS1v15(),
                  hashes.SHA256())


def test_pkcs11_signs_with_the_sign_key(pcsc_card: PcscCard, opensc_env: dict[str, str],
                                        tmp_path: Path) -> None:
    message = tmp_path / "message"
    message.write_bytes(b"a document")
    signature = tmp_path / "signature"
    pkcs11(opensc_env, SIGN_TOKEN, "--login", "--pin", SIGN_PASSWORD, "--sign", "--id", "02",
           "--mechanism", "SHA256-RSA-PKCS", "--input-file", str(message),
           "--output-file", str(signature))
    public = _public(pcsc_card.personalisation.certificates[CertSlot.SIGN])
    public.verify(signature.read_bytes(), message.read_bytes(), padding.PKCS1v15(),
                  hashes.SHA256())
    # The signing certificate is private: readable through PKCS#11 only after login.
    exported = tmp_path / "sign.der"
    pkcs11(opensc_env, SIGN_TOKEN, "--login", "--pin", SIGN_PASSWORD, "--read-object",
           "--type", "cert", "--id", "02", "--output-file", str(exported))
    assert x509.load_der_x509_certificate(exported.read_bytes()) == \
        pcsc_card.personalisation.certificates[CertSlot.SIGN]


def test_a_wrong_pin_through_pkcs11_spends_a_try(pcsc_card: PcscCard,
                                                 opensc_env: dict[str, str],
                                                 pcsc_client: JpkiCard, tmp_path: Path) -> None:
    message = tmp_path / "message"
    message.write_bytes(b"x")
    result = pkcs11(opensc_env, AUTH_TOKEN, "--login", "--pin", "9999", "--sign", "--id", "01",
                    "--mechanism", "SHA256-RSA-PKCS", "--input-file", str(message),
                    "--output-file", str(tmp_path / "sig"), check=False)
    assert result.returncode != 0 and "CKR_PIN_INCORRECT" in result.stdout + result.stderr
    pcsc_client.select_jpki_ap()
    assert pcsc_client.pin_retries(Pin.AUTH) == 2
    pcsc_client.verify_pin(Pin.AUTH, AUTH_PIN)  # restores the counter for the other tests
    assert pcsc_client.pin_retries(Pin.AUTH) == 3
