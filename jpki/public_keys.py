"""Checks on the subscriber public keys a card (or phone) sends for certification.

JPKI keys are RSA-2048 with e = 65537, generated on the card (reference §0, §1.2). We accept
RSA 2048–4096 with e = 65537 and refuse anything else with a precise error, as Boulder's goodkey
does: wrong algorithm, short modulus, unusual exponent, an even modulus or one with a small prime
factor (a broken or malicious key generator).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki.errors import InvalidPublicKey, UnsupportedKeyAlgorithm, WeakPublicKey

MIN_BITS = 2048
MAX_BITS = 4096
MAX_ENCODED = 8192  # bytes of PEM/DER we are willing to parse at all


def _small_primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return [i for i, flag in enumerate(sieve) if flag]


# Product of the primes below 10,000: one gcd finds any small factor.
_SMALL_PRIME_PRODUCT = math.prod(_small_primes(10_000))


@dataclass(frozen=True)
class SubjectKey:
    key: rsa.RSAPublicKey
    spki_der: bytes

    @property
    def sha256(self) -> str:
        """Fingerprint of the SubjectPublicKeyInfo, used to refuse a key certified twice."""
        return hashlib.sha256(self.spki_der).hexdigest()


def load_subject_key(data: bytes) -> SubjectKey:
    """Parse a SubjectPublicKeyInfo in PEM or DER and check it is a key we certify."""
    if len(data) > MAX_ENCODED:
        raise InvalidPublicKey(f"a public key is at most {MAX_ENCODED} bytes")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InvalidPublicKey("not a PEM or DER SubjectPublicKeyInfo") from exc
    except UnsupportedAlgorithm as exc:
        raise UnsupportedKeyAlgorithm("the key algorithm is not supported") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise UnsupportedKeyAlgorithm("only RSA keys are certified (reference §0)")
    numbers = key.public_numbers()
    if key.key_size < MIN_BITS:
        raise WeakPublicKey(f"RSA keys must be at least {MIN_BITS} bits", bits=key.key_size)
    if key.key_size > MAX_BITS:
        raise WeakPublicKey(f"RSA keys must be at most {MAX_BITS} bits", bits=key.key_size)
    if numbers.e != 65537:
        raise WeakPublicKey("the RSA public exponent must be 65537")
    if numbers.n % 2 == 0 or math.gcd(numbers.n, _SMALL_PRIME_PRODUCT) != 1:
        raise WeakPublicKey("the RSA modulus has a small prime factor")
    spki = key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return SubjectKey(key=key, spki_der=spki)
