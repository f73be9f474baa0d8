"""jpki.signing.sign_verified: a signature is returned only once it verifies under the signer's
certificate key (architecture §10.1)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki.errors import SignatureMismatch
from jpki.signing import sign_verified


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
