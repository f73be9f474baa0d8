"""Every supported cryptography signature call works through the token and verifies."""

from __future__ import annotations

import os
from typing import Any

import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import utils
from cryptography.hazmat.primitives.asymmetric.padding import (
    MGF1,
    OAEP,
    PSS,
    PKCS1v15,
    calculate_max_pss_salt_length,
)

from hsm import HsmRsaPrivateKey, KeyStore
from hsm.mechanisms import LOCAL_HASH_THRESHOLD

pytestmark = pytest.mark.hsm

HASHES = [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()]
MESSAGE = b"\xe5\x9b\xbd\xe6\xb0\x91 JPKI test message"


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


@pytest.mark.parametrize("algorithm", HASHES, ids=lambda a: a.name)
def test_pkcs1v15(rsa_key: HsmRsaPrivateKey, algorithm: hashes.HashAlgorithm) -> None:
    signature = rsa_key.sign(MESSAGE, PKCS1v15(), algorithm)
    assert len(signature) == 256
    rsa_key.public_key().verify(signature, MESSAGE, PKCS1v15(), algorithm)


@pytest.mark.parametrize("algorithm", HASHES, ids=lambda a: a.name)
def test_pkcs1v15_prehashed_is_the_same_signature(
    rsa_key: HsmRsaPrivateKey, algorithm: hashes.HashAlgorithm
) -> None:
    # PKCS#1 v1.5 is deterministic: hashing in the token (CKM_SHAxxx_RSA_PKCS) and
    # here (CKM_RSA_PKCS over our DigestInfo) must give the same bytes.
    digest = _digest(algorithm, MESSAGE)
    prehashed = rsa_key.sign(digest, PKCS1v15(), utils.Prehashed(algorithm))
    assert prehashed == rsa_key.sign(MESSAGE, PKCS1v15(), algorithm)
    rsa_key.public_key().verify(prehashed, digest, PKCS1v15(), utils.Prehashed(algorithm))


def test_sign_pkcs1v15_by_label(keystore: KeyStore, rsa_key: HsmRsaPrivateKey) -> None:
    for name, algorithm in (("sha256", hashes.SHA256()), ("sha512", hashes.SHA512())):
        signature = keystore.sign_pkcs1v15(rsa_key.label, MESSAGE, name)
        rsa_key.public_key().verify(signature, MESSAGE, PKCS1v15(), algorithm)
    assert keystore.sign_pkcs1v15(rsa_key.label, MESSAGE) == rsa_key.sign(
        MESSAGE, PKCS1v15(), hashes.SHA256()
    )
    with pytest.raises(ValueError):
        keystore.sign_pkcs1v15(rsa_key.label, MESSAGE, "sha1")


def test_long_messages_are_hashed_locally(rsa_key: HsmRsaPrivateKey) -> None:
    long_message = os.urandom(LOCAL_HASH_THRESHOLD + 1)
    signature = rsa_key.sign(long_message, PKCS1v15(), hashes.SHA256())
    rsa_key.public_key().verify(signature, long_message, PKCS1v15(), hashes.SHA256())
    at_threshold = long_message[:LOCAL_HASH_THRESHOLD]
    token_hashed = rsa_key.sign(at_threshold, PKCS1v15(), hashes.SHA256())
    assert token_hashed == rsa_key.sign(
        _digest(hashes.SHA256(), at_threshold), PKCS1v15(), utils.Prehashed(hashes.SHA256())
    )
    pss = PSS(MGF1(hashes.SHA256()), PSS.DIGEST_LENGTH)
    signature = rsa_key.sign(long_message, pss, hashes.SHA256())
    rsa_key.public_key().verify(signature, long_message, pss, hashes.SHA256())


def test_no_digest_info(rsa_key: HsmRsaPrivateKey) -> None:
    raw = b"raw PKCS#1 v1.5 payload"
    signature = rsa_key.sign(raw, PKCS1v15(), utils.NoDigestInfo())
    assert rsa_key.public_key().recover_data_from_signature(signature, PKCS1v15(), None) == raw


SALTS: dict[str, Any] = {
    "digest": PSS.DIGEST_LENGTH,
    "max": PSS.MAX_LENGTH,
    "zero": 0,
    "twenty": 20,
}


@pytest.mark.parametrize("algorithm", HASHES, ids=lambda a: a.name)
@pytest.mark.parametrize("salt", SALTS)
def test_pss(rsa_key: HsmRsaPrivateKey, algorithm: hashes.HashAlgorithm, salt: str) -> None:
    signature = rsa_key.sign(MESSAGE, PSS(MGF1(algorithm), SALTS[salt]), algorithm)
    expected_salt = {
        "digest": algorithm.digest_size,
        "max": calculate_max_pss_salt_length(rsa_key, algorithm),
        "zero": 0,
        "twenty": 20,
    }[salt]
    # Verifying with the exact salt length proves the token used it.
    rsa_key.public_key().verify(signature, MESSAGE, PSS(MGF1(algorithm), expected_salt), algorithm)


@pytest.mark.parametrize("algorithm", HASHES, ids=lambda a: a.name)
def test_pss_prehashed(rsa_key: HsmRsaPrivateKey, algorithm: hashes.HashAlgorithm) -> None:
    digest = _digest(algorithm, MESSAGE)
    pss = PSS(MGF1(algorithm), PSS.DIGEST_LENGTH)
    signature = rsa_key.sign(digest, pss, utils.Prehashed(algorithm))
    rsa_key.public_key().verify(signature, MESSAGE, pss, algorithm)


def test_unsupported_requests(rsa_key: HsmRsaPrivateKey) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        rsa_key.sign(MESSAGE, PKCS1v15(), hashes.SHA1())
    with pytest.raises(UnsupportedAlgorithm):
        rsa_key.sign(MESSAGE, PKCS1v15(), hashes.SHA3_256())
    with pytest.raises(UnsupportedAlgorithm):
        rsa_key.sign(MESSAGE, OAEP(MGF1(hashes.SHA256()), hashes.SHA256(), None), hashes.SHA256())
    with pytest.raises(UnsupportedAlgorithm):
        rsa_key.sign(MESSAGE, PSS(MGF1(hashes.SHA384()), 32), hashes.SHA256())
    with pytest.raises(UnsupportedAlgorithm):
        rsa_key.sign(MESSAGE, PSS(MGF1(hashes.SHA256()), 32), utils.NoDigestInfo())


def test_invalid_requests(rsa_key: HsmRsaPrivateKey) -> None:
    with pytest.raises(ValueError):
        rsa_key.sign(MESSAGE, PSS(MGF1(hashes.SHA256()), PSS.AUTO), hashes.SHA256())
    with pytest.raises(ValueError):
        rsa_key.sign(MESSAGE, PSS(MGF1(hashes.SHA256()), 223), hashes.SHA256())
    with pytest.raises(ValueError):
        rsa_key.sign(b"short", PKCS1v15(), utils.Prehashed(hashes.SHA256()))
