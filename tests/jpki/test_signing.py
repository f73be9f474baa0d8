"""Sign exactly what was checked (jpki.signing, architecture §3.4, §10.1): a certificate is the
recorded TBS, byte for byte, with a signature that verifies; a signature is returned only once
it verifies under the signer's certificate key — or an error, never a signed document.

Software keys stand in for the HSM here; the pipeline tests sign with SoftHSM."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from jpki.errors import SignatureMismatch
from jpki.signing import sign_tbs, sign_verified, to_be_signed


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)


def test_the_signature_verifies_under_the_public_key(keys) -> None:
    key, _ = keys
    signature = sign_verified(b"tbs", key, key.public_key())
    key.public_key().verify(signature, b"tbs", padding.PKCS1v15(), hashes.SHA256())


def test_a_key_that_does_not_match_the_certificate_signs_nothing(keys) -> None:
    key, other = keys
    with pytest.raises(SignatureMismatch, match="does not verify"):
        sign_verified(b"tbs", key, other.public_key())


# --- certificates ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def _builder(ca_key: rsa.RSAPrivateKey) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jpki test")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(rsa.generate_private_key(65537, 2048).public_key())
            .serial_number(0x1234_5678_9ABC_DEF0_1234)
            .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2031, 1, 1, 14, 59, 59, tzinfo=UTC))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))


def test_the_certificate_is_the_recorded_tbs_signed(ca_key):
    builder = _builder(ca_key)
    tbs, lint_cert = to_be_signed(builder, ca_key.public_key())
    cert = sign_tbs(tbs, ca_key, ca_key.public_key())
    assert cert.tbs_certificate_bytes == tbs == lint_cert.tbs_certificate_bytes
    ca_key.public_key().verify(cert.signature, tbs, padding.PKCS1v15(), hashes.SHA256())
    # Byte for byte what cryptography itself makes from the same builder and key (PKCS#1 v1.5
    # signatures are deterministic).
    assert cert.public_bytes(Encoding.DER) == builder.sign(ca_key, hashes.SHA256()).public_bytes(
        Encoding.DER)


class WrongKey:
    """An HSM fault: a signature by some other key."""

    def __init__(self) -> None:
        self._other = rsa.generate_private_key(65537, 2048)

    def sign(self, data, pad, algorithm):
        return self._other.sign(data, pad, algorithm)


def test_a_signature_that_does_not_verify_gives_no_certificate(ca_key):
    tbs, _ = to_be_signed(_builder(ca_key), ca_key.public_key())
    with pytest.raises(SignatureMismatch):
        sign_tbs(tbs, WrongKey(), ca_key.public_key())  # type: ignore[arg-type]


def test_a_tbs_naming_another_algorithm_is_not_signed(ca_key):
    other = _builder(ca_key).sign(ca_key, hashes.SHA384()).tbs_certificate_bytes
    signed: list[bytes] = []

    class Recording:
        def sign(self, data, pad, algorithm):
            signed.append(data)
            return ca_key.sign(data, pad, algorithm)

    with pytest.raises(SignatureMismatch):
        sign_tbs(other, Recording(), ca_key.public_key())  # type: ignore[arg-type]
    assert signed == []  # refused before the key was asked
    with pytest.raises(SignatureMismatch):
        sign_tbs(b"\x30\x03\x02\x01\x01", Recording(), ca_key.public_key())  # type: ignore[arg-type]
    assert signed == []
