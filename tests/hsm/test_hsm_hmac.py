"""HMAC-SHA-256 with a secret that never leaves the token.

The key cannot be read, so the MAC cannot be compared with Python's hmac module;
instead: it is deterministic, 32 bytes, and depends on both the key and the data.
"""

from __future__ import annotations

import pytest

from hsm import HsmRsaPrivateKey, KeyNotFound, KeyStore

pytestmark = pytest.mark.hsm


def test_hmac_is_deterministic(keystore: KeyStore, hmac_labels: tuple[str, str]) -> None:
    mac = keystore.hmac_sha256(hmac_labels[0], b"individual number 123456789012")
    assert len(mac) == 32
    assert keystore.hmac_sha256(hmac_labels[0], b"individual number 123456789012") == mac


def test_hmac_depends_on_key_and_data(keystore: KeyStore, hmac_labels: tuple[str, str]) -> None:
    a, b = hmac_labels
    assert keystore.hmac_sha256(a, b"data") != keystore.hmac_sha256(b, b"data")
    assert keystore.hmac_sha256(a, b"data") != keystore.hmac_sha256(a, b"date")
    assert len(keystore.hmac_sha256(a, b"")) == 32


def test_hmac_keys_are_found_by_label(keystore: KeyStore, hmac_labels: tuple[str, str]) -> None:
    for label in hmac_labels:
        assert keystore.has_key(label)
        assert label in keystore.key_labels()


def test_rsa_key_is_not_an_hmac_key(keystore: KeyStore, rsa_key: HsmRsaPrivateKey) -> None:
    with pytest.raises(KeyNotFound):
        keystore.hmac_sha256(rsa_key.label, b"data")
