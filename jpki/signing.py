"""Sign exactly what was checked.

Boulder's issuance order (architecture §3, §10): the to-be-signed certificate is built and linted
*before* the CA key is touched, the intent is recorded, and after signing the signed TBS is compared
with the linted one. cryptography builds and signs in one call, so we split it:

1. :func:`to_be_signed` runs the builder against a stand-in key that records the bytes the builder
   asks it to sign (the DER TBSCertificate) and returns a placeholder signature. The resulting
   "lint certificate" parses like the real one, so profile checks run on it.
2. :func:`sign_tbs` has the HSM sign those recorded bytes, assembles the Certificate around
   them (three DER elements), re-parses it with cryptography and checks that its TBS is
   byte-for-byte the linted one and that the signature verifies under the issuer's public key
   (an HSM fault must not produce a published certificate). :func:`sign_tbs_many` does the
   same for a batch whose signatures the key store makes in one call.

The same split serves CRLs (their builder calls ``sign`` the same way). What is not built by a
cryptography builder — an OCSP ResponseData, assembled with asn1crypto — is checked before
signing by its own lints and signed by :func:`sign_verified`, which verifies the signature under
the signer's public key before anything uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki import der
from jpki.errors import SignatureMismatch


class RecordingKey(rsa.RSAPrivateKey):
    """Stands in for the CA key while building: records the TBS bytes, returns zeros."""

    def __init__(self, public: rsa.RSAPublicKey) -> None:
        self._public = public
        self.recorded: bytes | None = None

    def sign(self, data: bytes, padding: Any, algorithm: Any) -> bytes:
        self.recorded = bytes(data)
        return b"\x00" * ((self._public.key_size + 7) // 8)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: Any) -> NoReturn:
        raise NotImplementedError("a recording key cannot decrypt")

    def private_numbers(self) -> NoReturn:
        raise NotImplementedError("a recording key has no private numbers")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> NoReturn:
        raise NotImplementedError("a recording key has no private bytes")

    def __copy__(self) -> RecordingKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> RecordingKey:
        return self


def to_be_signed(builder: x509.CertificateBuilder,
                 issuer_public: rsa.RSAPublicKey) -> tuple[bytes, x509.Certificate]:
    """Return (TBSCertificate DER, lint certificate) for a builder, without any real key."""
    recorder = RecordingKey(issuer_public)
    lint_cert = builder.sign(recorder, hashes.SHA256())
    if recorder.recorded is None:  # pragma: no cover - cryptography always signs once
        raise SignatureMismatch("the builder did not produce a TBSCertificate")
    if lint_cert.tbs_certificate_bytes != recorder.recorded:  # pragma: no cover
        raise SignatureMismatch("the lint certificate's TBS differs from the recorded one")
    return recorder.recorded, lint_cert


# AlgorithmIdentifier sha256WithRSAEncryption, NULL parameters (RFC 4055 §5), as the builder
# writes it into the TBS.
_SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")


def sign_tbs(tbs_der: bytes, key: rsa.RSAPrivateKey,
             issuer_public: rsa.RSAPublicKey) -> x509.Certificate:
    """Sign a recorded TBSCertificate with the CA key and return the checked certificate."""
    require_sha256_rsa(tbs_der)
    return checked_certificate(tbs_der, key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA256()),
                               issuer_public)


def sign_tbs_many(tbs_ders: Sequence[bytes], sign_many: Callable[[list[bytes]], list[bytes]],
                  issuer_public: rsa.RSAPublicKey) -> list[x509.Certificate]:
    """:func:`sign_tbs` for several TBSCertificates of one CA key, signed by ``sign_many`` in one
    call (the key store's bulk signing: :meth:`jpki.ports.KeyStore.sign_many`); every
    certificate is checked as :func:`sign_tbs` checks it."""
    for tbs in tbs_ders:
        require_sha256_rsa(tbs)
    signatures = sign_many(list(tbs_ders))
    if len(signatures) != len(tbs_ders):
        raise SignatureMismatch(f"{len(signatures)} signatures for {len(tbs_ders)} "
                                "certificates")
    return [checked_certificate(tbs, signature, issuer_public)
            for tbs, signature in zip(tbs_ders, signatures, strict=True)]


def require_sha256_rsa(tbs_der: bytes) -> None:
    if _signature_field(tbs_der) != _SHA256_WITH_RSA:
        # RFC 5280 §4.1.1.2: the outer signatureAlgorithm repeats the TBS's own field.
        raise SignatureMismatch("the TBSCertificate names another signature algorithm")


def checked_certificate(tbs_der: bytes, signature: bytes,
                        issuer_public: rsa.RSAPublicKey) -> x509.Certificate:
    """The certificate of a TBSCertificate and the HSM's signature over it, once the signature
    verifies under the CA certificate's key and the certificate reads back to the same TBS."""
    # RFC 5280 §4.1: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
    # signatureValue BIT STRING }, the recorded TBS copied byte for byte (assembled here rather
    # than by asn1crypto, which parsed the whole TBS to do it: 20 times slower).
    bits = b"\x00" + signature  # no unused bits
    body = tbs_der + _SHA256_WITH_RSA + der.header(der.BIT_STRING, len(bits)) + bits
    cert = x509.load_der_x509_certificate(der.header(der.SEQUENCE, len(body)) + body)
    if cert.tbs_certificate_bytes != tbs_der:
        raise SignatureMismatch("the signed TBSCertificate differs from the linted one")
    try:
        issuer_public.verify(signature, tbs_der, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise SignatureMismatch("the HSM signature does not verify under the CA key") from exc
    return cert


def sign_verified(data: bytes, key: rsa.RSAPrivateKey, public: rsa.RSAPublicKey) -> bytes:
    """Sign ``data`` (sha256WithRSAEncryption, PKCS#1 v1.5) with ``key`` — an HSM key — and
    verify the signature under ``public``, its certificate's key, before returning it: an HSM
    fault or a key that does not match the certificate must not produce a signed document."""
    signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    try:
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise SignatureMismatch("the HSM signature does not verify under the signer's "
                                "certificate") from exc
    return signature


def _signature_field(tbs_der: bytes) -> bytes | None:
    """The TBSCertificate's signature AlgorithmIdentifier (RFC 5280 §4.1.2.3): its second
    element, or its third after an explicit version."""
    try:
        fields = der.children(tbs_der)
        first = next(fields, None)
        serial = next(fields, None) if first is not None and first[0] == 0xA0 else first
        return next(fields, None) if serial is not None else None
    except ValueError:
        return None
