"""The private keys are generated in the token and can never be read out of it.

By default a key never leaves the token at all; a *replicable* key (the CA's, hsm.replication)
may leave only wrapped under a key the security officer trusted - its value is still never
readable.
"""

from __future__ import annotations

import copy

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP, PKCS1v15
from pkcs11.constants import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive

from hsm import HsmRsaPrivateKey, KeyNotExportable, KeyStore, KeyUsageNotPermitted

pytestmark = pytest.mark.hsm

PROTECTED = {
    "sensitive": True,
    "extractable": False,
    "always_sensitive": True,
    "never_extractable": True,
    "private": True,
    "local": True,
    "wrap_with_trusted": False,
}
REPLICABLE = {**PROTECTED, "extractable": True, "never_extractable": False,
              "wrap_with_trusted": True}


def test_rsa_key_protection(keystore: KeyStore, rsa_key: HsmRsaPrivateKey) -> None:
    assert keystore.key_protection(rsa_key.label) == PROTECTED


def test_hmac_key_protection(keystore: KeyStore, hmac_labels: tuple[str, str]) -> None:
    assert keystore.key_protection(hmac_labels[0]) == PROTECTED


def test_replicable_keys_are_sensitive_and_leave_only_under_a_trusted_key(
    keystore: KeyStore,
) -> None:
    if not keystore.has_key("test-hsm-replicable-rsa"):
        keystore.generate_rsa_key("test-hsm-replicable-rsa", replicable=True)
    if not keystore.has_key("test-hsm-replicable-hmac"):
        keystore.generate_hmac_key("test-hsm-replicable-hmac", replicable=True)
    for label in ("test-hsm-replicable-rsa", "test-hsm-replicable-hmac"):
        assert keystore.key_protection(label) == REPLICABLE, label
    with keystore.session() as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY,
                              label="test-hsm-replicable-rsa")
        with pytest.raises(AttributeSensitive):
            key[Attribute.PRIVATE_EXPONENT]


@pytest.mark.parametrize(
    "attribute",
    [Attribute.PRIVATE_EXPONENT, Attribute.PRIME_1, Attribute.PRIME_2, Attribute.COEFFICIENT],
)
def test_private_exponent_cannot_be_read(
    keystore: KeyStore, rsa_key: HsmRsaPrivateKey, attribute: Attribute
) -> None:
    with keystore.session() as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=rsa_key.label)
        with pytest.raises(AttributeSensitive):
            key[attribute]
        # The public parts stay readable.
        assert (
            int.from_bytes(key[Attribute.MODULUS], "big") == rsa_key.public_key().public_numbers().n
        )


def test_hmac_value_cannot_be_read(keystore: KeyStore, hmac_labels: tuple[str, str]) -> None:
    with keystore.session() as session:
        key = session.get_key(object_class=ObjectClass.SECRET_KEY, label=hmac_labels[0])
        with pytest.raises(AttributeSensitive):
            key[Attribute.VALUE]


def test_private_key_is_not_exportable(rsa_key: HsmRsaPrivateKey) -> None:
    with pytest.raises(KeyNotExportable):
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with pytest.raises(KeyNotExportable):
        rsa_key.private_numbers()


def test_signing_keys_do_not_decrypt(rsa_key: HsmRsaPrivateKey) -> None:
    ciphertext = rsa_key.public_key().encrypt(
        b"secret", OAEP(MGF1(hashes.SHA256()), hashes.SHA256(), None)
    )
    with pytest.raises(NotImplementedError):
        rsa_key.decrypt(ciphertext, OAEP(MGF1(hashes.SHA256()), hashes.SHA256(), None))
    with pytest.raises(KeyUsageNotPermitted):
        rsa_key.decrypt(ciphertext, PKCS1v15())


def test_copies_are_the_same_handle(rsa_key: HsmRsaPrivateKey) -> None:
    assert copy.copy(rsa_key) is rsa_key
    assert copy.deepcopy(rsa_key) is rsa_key
    assert repr(rsa_key) == f"<HsmRsaPrivateKey label={rsa_key.label!r} key_size=2048>"
