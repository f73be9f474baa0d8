"""CMS SignedData (RFC 5652) for documents a holder signs with a card or phone key: the mobile
application (issue "smartphone certificates") and relying-party consents.

Only the shape these documents need: attached content (``id-data``), one signer identified by
issuer and serial number, the signer's certificate included, SHA-256 digests, signed attributes
(content type, message digest, signing time) signed with RSA PKCS#1 v1.5 — what a JPKI-AP card's
COMPUTE DIGITAL SIGNATURE over a DigestInfo produces (reference §4.4). asn1crypto encodes
and decodes the structures; verification is explicit here so that every check cites its clause.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import algos as asn1_algos
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki.errors import InvalidInput

MAX_SIGNED_DATA = 64 * 1024

# The DER prefix of a SHA-256 DigestInfo (RFC 8017 §9.2 note 1; reference §4.4).
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


class InvalidSignedData(InvalidInput):
    code = "cms.invalid"
    title = "The signed document is not valid"


@dataclass(frozen=True)
class VerifiedSignedData:
    content: bytes
    signer: x509.Certificate
    signing_time: datetime | None


def verify_signed_data(der: bytes) -> VerifiedSignedData:
    """Check the structure and the signature; the caller checks the signer certificate
    (whose, issued by us, valid, current) and what the content says."""
    if not der or len(der) > MAX_SIGNED_DATA:
        raise InvalidSignedData("the signed document is empty or too large")
    try:
        info = asn1_cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise InvalidSignedData("not a CMS SignedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "data" or encap["content"].native is None:
            raise InvalidSignedData("the signed document must carry its content (id-data)")
        content: bytes = encap["content"].native
        signer_infos = signed["signer_infos"]
        if len(signer_infos) != 1:
            raise InvalidSignedData("exactly one signer")
        signer_info = signer_infos[0]
        sid = signer_info["sid"]
        if sid.name != "issuer_and_serial_number":
            raise InvalidSignedData("the signer is identified by issuer and serial number")
        serial = sid.chosen["serial_number"].native
        issuer = sid.chosen["issuer"]
        certs = [c.chosen for c in signed["certificates"] or [] if c.name == "certificate"]
        match = [c for c in certs if c.serial_number == serial and c.issuer == issuer]
        if len(match) != 1:
            raise InvalidSignedData("the signer's certificate must be included")
        signer_der = match[0].dump()
        if signer_info["digest_algorithm"]["algorithm"].native != "sha256":
            raise InvalidSignedData("SHA-256 digests only")
        algorithm = signer_info["signature_algorithm"]["algorithm"].native
        if algorithm not in ("rsassa_pkcs1v15", "sha256_rsa"):
            raise InvalidSignedData("RSA PKCS#1 v1.5 signatures only")
        attrs = signer_info["signed_attrs"]
        if not attrs:
            # RFC 5652 §5.3: without signed attributes the content itself is signed; we require
            # them so that the content type and signing time are covered by the signature.
            raise InvalidSignedData("signed attributes are required")
        values = {a["type"].native: a["values"] for a in attrs}
        if values.get("content_type") is None or values["content_type"][0].native != "data":
            raise InvalidSignedData("the content-type attribute must be id-data (RFC 5652 §11.1)")
        digest = values.get("message_digest")
        if digest is None or digest[0].native != hashlib.sha256(content).digest():
            raise InvalidSignedData("the message digest does not match the content (§11.2)")
        signing_time = None
        if values.get("signing_time") is not None:
            signing_time = values["signing_time"][0].native
        # RFC 5652 §5.4: the signature covers the DER of the attributes as a SET OF.
        signed_bytes = attrs.untag().dump()
        signature = signer_info["signature"].native
    except InvalidSignedData:
        raise
    except Exception as exc:
        raise InvalidSignedData("not a DER CMS SignedData") from exc
    try:
        signer = x509.load_der_x509_certificate(signer_der)
    except ValueError as exc:
        raise InvalidSignedData("the signer's certificate does not parse") from exc
    key = signer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidSignedData("RSA signers only")
    try:
        key.verify(signature, signed_bytes, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise InvalidSignedData("the signature does not verify") from exc
    if signing_time is not None and signing_time.tzinfo is None:
        signing_time = signing_time.replace(tzinfo=UTC)
    return VerifiedSignedData(content=content, signer=signer, signing_time=signing_time)


def build_signed_data(content: bytes, signer_der: bytes,
                      sign_digest_info: Callable[[bytes], bytes],
                      signing_time: datetime) -> bytes:
    """A SignedData over ``content``; ``sign_digest_info`` receives a SHA-256 DigestInfo and
    returns the PKCS#1 v1.5 signature — exactly what a card's COMPUTE DIGITAL SIGNATURE
    (`80 2A 00 80`) does. Used by the reference phone client and by tests."""
    cert = asn1_x509.Certificate.load(signer_der)
    attrs = asn1_cms.CMSAttributes([
        {"type": "content_type", "values": ["data"]},
        {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
        {"type": "signing_time", "values": [asn1_core.UTCTime(signing_time)]},
    ])
    digest = hashlib.sha256(attrs.dump()).digest()
    signature = sign_digest_info(SHA256_DIGEST_INFO_PREFIX + digest)
    signer_info = asn1_cms.SignerInfo({
        "version": "v1",
        "sid": asn1_cms.SignerIdentifier({"issuer_and_serial_number": {
            "issuer": cert.issuer, "serial_number": cert.serial_number}}),
        "digest_algorithm": asn1_algos.DigestAlgorithm({"algorithm": "sha256"}),
        "signed_attrs": attrs,
        "signature_algorithm": asn1_algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"}),
        "signature": signature,
    })
    der: bytes = asn1_cms.ContentInfo({
        "content_type": "signed_data",
        "content": asn1_cms.SignedData({
            "version": "v1",
            "digest_algorithms": [asn1_algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "data", "content": content},
            "certificates": [cert],
            "signer_infos": [signer_info],
        }),
    }).dump()
    return der
