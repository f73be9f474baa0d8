"""An RSA private key that lives in the token, usable wherever cryptography takes one.

cryptography's X.509 certificate, CRL and OCSP builders accept any subclass of
``RSAPrivateKey`` and call its ``sign(data, padding, algorithm)``; this class turns
that call into a PKCS#11 signature with the token key, so the CA code signs through
the HSM without knowing it. The object is only a handle: the private key material
cannot be read out of the token, and copying the object copies the handle.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import _serialization, hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives.asymmetric.padding import (
    MGF1,
    PSS,
    AsymmetricPadding,
    PKCS1v15,
    calculate_max_pss_salt_length,
)
from pkcs11.mechanisms import MGF, Mechanism

from hsm.errors import KeyNotExportable, KeyUsageNotPermitted
from hsm.mechanisms import LOCAL_HASH_THRESHOLD, RSA_HASHES, RsaHash

PssParams = tuple[Mechanism, MGF, int]


class MechanismSigner(Protocol):
    """What the key needs from the key store: one signature by label and mechanism."""

    def sign_with_mechanism(
        self,
        label: str,
        data: bytes,
        mechanism: Mechanism,
        mechanism_param: PssParams | None = None,
    ) -> bytes: ...


class HsmRsaPrivateKey(rsa.RSAPrivateKey):
    """The token's RSA key ``label``; get one from :meth:`hsm.keystore.KeyStore.rsa_key`."""

    def __init__(self, signer: MechanismSigner, label: str, public_key: rsa.RSAPublicKey) -> None:
        self._signer = signer
        self._label = label
        self._public_key = public_key

    @property
    def label(self) -> str:
        return self._label

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public_key

    def sign(
        self,
        data: bytes,
        padding: AsymmetricPadding,
        algorithm: asym_utils.Prehashed | hashes.HashAlgorithm | asym_utils.NoDigestInfo,
    ) -> bytes:
        """Sign in the token.

        * PKCS1v15 + SHA-256/384/512: CKM_SHAxxx_RSA_PKCS (the token hashes).
        * PKCS1v15 + ``Prehashed``: CKM_RSA_PKCS over the DigestInfo built here.
        * PKCS1v15 + ``NoDigestInfo``: CKM_RSA_PKCS over ``data`` as given.
        * PSS with MGF1 of the same hash: CKM_SHAxxx_RSA_PKCS_PSS (or CKM_RSA_PKCS_PSS
          over the digest when prehashed); salt DIGEST_LENGTH, MAX_LENGTH or a number.

        Messages over :data:`hsm.mechanisms.LOCAL_HASH_THRESHOLD` are hashed here and
        only the digest is sent, which gives the same signature. Anything else raises
        ``UnsupportedAlgorithm``; PSS.AUTO raises ValueError, as cryptography does.
        """
        data = bytes(data)  # python-pkcs11 needs bytes, not another buffer type
        if isinstance(algorithm, asym_utils.NoDigestInfo):
            if not isinstance(padding, PKCS1v15):
                raise UnsupportedAlgorithm(
                    "NoDigestInfo is only meaningful with PKCS1v15 padding",
                )
            return self._sign(data, Mechanism.RSA_PKCS)

        prehashed = isinstance(algorithm, asym_utils.Prehashed)
        # Prehashed keeps its hash private; cryptography's own backends read it the same way.
        hash_algorithm = (
            algorithm._algorithm if isinstance(algorithm, asym_utils.Prehashed) else algorithm
        )
        spec = RSA_HASHES.get(hash_algorithm.name)
        if spec is None:
            raise UnsupportedAlgorithm(
                f"{hash_algorithm.name} is not supported for token signatures "
                f"(use one of {', '.join(RSA_HASHES)})",
            )
        if prehashed and len(data) != spec.digest_size:
            raise ValueError(
                "The provided data must be the same length as the hash algorithm's digest size."
            )
        hash_here = prehashed or len(data) > LOCAL_HASH_THRESHOLD

        if isinstance(padding, PKCS1v15):
            if not hash_here:
                return self._sign(data, spec.pkcs1v15_mechanism)
            digest = data if prehashed else spec.digest(data)
            return self._sign(spec.digest_info_prefix + digest, Mechanism.RSA_PKCS)

        if isinstance(padding, PSS):
            params = (
                spec.hash_mechanism,
                self._pss_mgf(padding, spec),
                self._pss_salt(padding, spec),
            )
            if not hash_here:
                return self._sign(data, spec.pss_mechanism, params)
            digest = data if prehashed else spec.digest(data)
            return self._sign(digest, Mechanism.RSA_PKCS_PSS, params)

        raise UnsupportedAlgorithm(
            f"padding {padding.name} is not supported for token signatures",
        )

    def _sign(self, data: bytes, mechanism: Mechanism, params: PssParams | None = None) -> bytes:
        return self._signer.sign_with_mechanism(self._label, data, mechanism, params)

    @staticmethod
    def _pss_mgf(pss: PSS, spec: RsaHash) -> MGF:
        mgf = pss.mgf
        # SoftHSM rejects CKM_SHAxxx_RSA_PKCS_PSS whose MGF1 hash differs (CKR_ARGUMENTS_BAD).
        if not isinstance(mgf, MGF1) or mgf._algorithm.name != spec.name:
            raise UnsupportedAlgorithm(
                f"PSS needs MGF1 with the signature hash ({spec.name})",
            )
        return spec.mgf

    def _pss_salt(self, pss: PSS, spec: RsaHash) -> int:
        largest = calculate_max_pss_salt_length(self, spec.algorithm())
        # PSS exposes neither its salt length nor MGF1 its hash; cryptography's own
        # backends read these same private attributes.
        salt = pss._salt_length
        if isinstance(salt, int):
            if salt > largest:
                raise ValueError(f"PSS salt length {salt} exceeds the maximum {largest}")
            return salt
        if salt is PSS.MAX_LENGTH:
            return largest
        if salt is PSS.DIGEST_LENGTH:
            return spec.digest_size
        raise ValueError("PSS salt length can only be set to AUTO when verifying")

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        raise KeyUsageNotPermitted(f"token key {self._label!r} is a signing key; it never decrypts")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise KeyNotExportable(f"the private key {self._label!r} cannot leave the token")

    def private_bytes(
        self,
        encoding: _serialization.Encoding,
        format: _serialization.PrivateFormat,
        encryption_algorithm: _serialization.KeySerializationEncryption,
    ) -> bytes:
        raise KeyNotExportable(f"the private key {self._label!r} cannot leave the token")

    def __copy__(self) -> HsmRsaPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> HsmRsaPrivateKey:
        return self

    def __repr__(self) -> str:
        return f"<HsmRsaPrivateKey label={self._label!r} key_size={self.key_size}>"
