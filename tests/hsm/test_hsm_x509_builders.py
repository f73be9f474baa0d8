"""cryptography's certificate, CRL and OCSP builders sign through the token key."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, PSS, PKCS1v15
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from hsm import HsmRsaPrivateKey

pytestmark = pytest.mark.hsm

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI"),
        x509.NameAttribute(NameOID.COMMON_NAME, "HSM test CA"),
    ]
)


def _self_signed(key: HsmRsaPrivateKey, rsa_padding: PSS | None = None) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(NAME)
        .issuer_name(NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256(), rsa_padding=rsa_padding)
    )


def test_self_signed_certificate(rsa_key: HsmRsaPrivateKey) -> None:
    cert = _self_signed(rsa_key)
    cert.verify_directly_issued_by(cert)
    rsa_key.public_key().verify(
        cert.signature, cert.tbs_certificate_bytes, PKCS1v15(), hashes.SHA256()
    )
    assert cert.public_key() == rsa_key.public_key()


def test_self_signed_certificate_pss(rsa_key: HsmRsaPrivateKey) -> None:
    pss = PSS(MGF1(hashes.SHA256()), PSS.DIGEST_LENGTH)
    cert = _self_signed(rsa_key, pss)
    cert.verify_directly_issued_by(cert)
    rsa_key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, pss, hashes.SHA256())


def test_crl(rsa_key: HsmRsaPrivateKey) -> None:
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(1234567)
        .revocation_date(NOW)
        .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(NAME)
        .last_update(NOW)
        .next_update(NOW + datetime.timedelta(days=1))
        .add_revoked_certificate(revoked)
        .add_extension(x509.CRLNumber(1), critical=False)
        .sign(rsa_key, hashes.SHA384())
    )
    assert crl.is_signature_valid(rsa_key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(1234567) is not None


def test_ocsp_response(rsa_key: HsmRsaPrivateKey) -> None:
    ca = _self_signed(rsa_key)
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=ca,
            issuer=ca,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=NOW,
            next_update=NOW + datetime.timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, ca)
        .sign(rsa_key, hashes.SHA256())
    )
    parsed = ocsp.load_der_ocsp_response(response.public_bytes(Encoding.DER))
    assert parsed.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert parsed.signature_hash_algorithm is not None
    rsa_key.public_key().verify(
        parsed.signature,
        parsed.tbs_response_bytes,
        PKCS1v15(),
        parsed.signature_hash_algorithm,
    )
