"""The RSA operations behind COMPUTE DIGITAL SIGNATURE's six P1 schemes (reference §4.4).

P1 00 pads whatever it is given with PKCS#1 v1.5 (EMSA-PKCS1-v1_5 without adding a DigestInfo:
the client supplies one). ``cryptography`` has no "pad these bytes" signing call, so a payload
that is a DigestInfo of a hash it knows goes through its ``Prehashed`` API (the same bytes, and
fast); anything else is padded here and exponentiated with the CRT, then checked with the public
exponent before it leaves the card (a faulty signature can leak the key).
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from devices.card.jpki_ap import SignScheme, sha256_digest_info

# RFC 8017 §9.2 note 1: DER of DigestInfo up to the digest (SHA-1 takes the generic path).
_DIGEST_INFO_PREFIXES: tuple[tuple[bytes, hashes.HashAlgorithm], ...] = (
    (sha256_digest_info(bytes(32))[:-32], hashes.SHA256()),
    (bytes.fromhex("3041300D060960864801650304020205000430"), hashes.SHA384()),
    (bytes.fromhex("3051300D060960864801650304020305000440"), hashes.SHA512()),
)


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def sign(key: rsa.RSAPrivateKey, scheme: SignScheme, data: bytes) -> bytes:
    """Sign ``data`` as scheme ``scheme`` prescribes; the caller has checked the length."""
    match scheme:
        case SignScheme.PKCS1_AS_GIVEN:
            return pkcs1_sign_payload(key, data)
        case SignScheme.PKCS1_SHA256_BARE:
            return pkcs1_sign_payload(key, hashlib.sha256(data).digest())
        case SignScheme.PKCS1_PREHASHED_SHA256:
            return key.sign(data, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        case SignScheme.PKCS1_SHA256:
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        case SignScheme.PSS_PREHASHED_SHA256:
            return key.sign(data, _pss(), Prehashed(hashes.SHA256()))
        case SignScheme.PSS_SHA256:
            return key.sign(data, _pss(), hashes.SHA256())


def pkcs1_sign_payload(key: rsa.RSAPrivateKey, payload: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 over ``payload`` taken as the encoded T (RFC 8017 §9.2 step 2)."""
    for prefix, algorithm in _DIGEST_INFO_PREFIXES:
        if len(payload) == len(prefix) + algorithm.digest_size and payload.startswith(prefix):
            return key.sign(payload[len(prefix):], padding.PKCS1v15(), Prehashed(algorithm))
    k = (key.key_size + 7) // 8
    if len(payload) > k - 11:
        raise ValueError("payload too long for PKCS#1 v1.5 under this key")
    encoded = b"\x00\x01" + b"\xff" * (k - 3 - len(payload)) + b"\x00" + payload
    m = int.from_bytes(encoded, "big")
    private = key.private_numbers()
    public = private.public_numbers
    s1 = pow(m, private.dmp1, private.p)
    s2 = pow(m, private.dmq1, private.q)
    s = s2 + (private.iqmp * (s1 - s2) % private.p) * private.q
    if pow(s, public.e, public.n) != m:
        raise ArithmeticError("the RSA computation failed its check")
    return s.to_bytes(k, "big")
