"""Subscriber public keys: what is certified and what is refused (jpki.public_keys)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jpki.errors import InvalidPublicKey, UnsupportedKeyAlgorithm, WeakPublicKey
from jpki.public_keys import load_subject_key


def spki(key, encoding=Encoding.PEM) -> bytes:
    return key.public_bytes(encoding, PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def rsa2048():
    return rsa.generate_private_key(65537, 2048).public_key()


def test_rsa_2048_in_pem_and_der(rsa2048):
    pem = load_subject_key(spki(rsa2048))
    der = load_subject_key(spki(rsa2048, Encoding.DER))
    assert pem.sha256 == der.sha256 and pem.key.key_size == 2048


@pytest.mark.parametrize("key", [
    ec.generate_private_key(ec.SECP256R1()).public_key(),
    ed25519.Ed25519PrivateKey.generate().public_key(),
])
def test_other_algorithms_are_refused(key):
    with pytest.raises(UnsupportedKeyAlgorithm):
        load_subject_key(spki(key))


def test_short_rsa_is_refused():
    with pytest.raises(WeakPublicKey, match="at least 2048"):
        load_subject_key(spki(rsa.generate_private_key(65537, 1024).public_key()))  # noqa: S505


def _rsa(n: int, e: int) -> bytes:
    return spki(rsa.RSAPublicNumbers(e, n).public_key())


def test_exponent_other_than_65537_is_refused(rsa2048):
    n = rsa2048.public_numbers().n
    with pytest.raises(WeakPublicKey, match="65537"):
        load_subject_key(_rsa(n, 3))


def test_modulus_with_a_small_factor_is_refused(rsa2048):
    n = rsa2048.public_numbers().n
    bad = (n // 7919) * 7919 | (1 << 2047)  # 2048 bits, divisible by the prime 7919
    while bad % 7919:
        bad += 1
    with pytest.raises(WeakPublicKey, match="small prime"):
        load_subject_key(_rsa(bad, 65537))


@pytest.mark.parametrize("data", [
    b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    b"\x30\x82\xff\xff" + b"\x00" * 20, bytes(range(256)),
])
def test_garbage_is_refused(data):
    with pytest.raises(InvalidPublicKey):
        load_subject_key(data)


def test_oversized_input_is_refused_before_parsing():
    with pytest.raises(InvalidPublicKey, match="at most"):
        load_subject_key(b"-----BEGIN PUBLIC KEY-----\n" + b"A" * 10_000)
