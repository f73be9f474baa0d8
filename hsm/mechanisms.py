"""How cryptography's hash algorithms map to PKCS#11 RSA signature mechanisms.

Only SHA-2 with 256, 384 and 512 bits: the mechanisms SoftHSM implements that a new
PKI should use (no SHA-1, no MD5; SHA-224 is allowed by the profiles but unused).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from pkcs11.mechanisms import MGF, Mechanism


@dataclass(frozen=True)
class RsaHash:
    name: str
    """cryptography's name for the hash (``hashes.SHA256.name``)."""
    digest_size: int
    algorithm: type[hashes.HashAlgorithm]
    hash_mechanism: Mechanism
    """CKM_SHAxxx: the hashAlg of CK_RSA_PKCS_PSS_PARAMS."""
    mgf: MGF
    """CKG_MGF1_SHAxxx: SoftHSM requires the MGF1 hash to be the signature hash."""
    pkcs1v15_mechanism: Mechanism
    """CKM_SHAxxx_RSA_PKCS: the token hashes, pads and signs."""
    pss_mechanism: Mechanism
    """CKM_SHAxxx_RSA_PKCS_PSS."""
    digest_info_prefix: bytes
    """DER of DigestInfo up to the digest (RFC 8017, section 9.2, note 1), for CKM_RSA_PKCS."""

    def digest(self, data: bytes) -> bytes:
        h = hashes.Hash(self.algorithm())
        h.update(data)
        return h.finalize()


RSA_HASHES: dict[str, RsaHash] = {
    h.name: h
    for h in (
        RsaHash(
            "sha256",
            32,
            hashes.SHA256,
            Mechanism.SHA256,
            MGF.SHA256,
            Mechanism.SHA256_RSA_PKCS,
            Mechanism.SHA256_RSA_PKCS_PSS,
            bytes.fromhex("3031300d060960864801650304020105000420"),
        ),
        RsaHash(
            "sha384",
            48,
            hashes.SHA384,
            Mechanism.SHA384,
            MGF.SHA384,
            Mechanism.SHA384_RSA_PKCS,
            Mechanism.SHA384_RSA_PKCS_PSS,
            bytes.fromhex("3041300d060960864801650304020205000430"),
        ),
        RsaHash(
            "sha512",
            64,
            hashes.SHA512,
            Mechanism.SHA512,
            MGF.SHA512,
            Mechanism.SHA512_RSA_PKCS,
            Mechanism.SHA512_RSA_PKCS_PSS,
            bytes.fromhex("3051300d060960864801650304020305000440"),
        ),
    )
}

LOCAL_HASH_THRESHOLD = 64 * 1024
"""Messages longer than this are hashed in Python and only the digest goes to the token.

The signature is the same, but a 50 MB CRL passed to CKM_SHA256_RSA_PKCS is copied
into the module whole (measured: +100 MB peak RSS for a 50 MB message with SoftHSM).
"""
