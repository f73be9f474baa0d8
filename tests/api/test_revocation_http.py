"""Revocation services over HTTP: CRL caching headers and refusals, and the OCSP endpoint under
arbitrary and mutated input (hypothesis): always an OCSP response or a 4xx, never a 5xx, and
nothing that arrives changes state."""

from __future__ import annotations

import base64
import urllib.parse

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from api.app import create_app
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, RevocationReason
from jpki.store.tables import certificates

pytestmark = pytest.mark.hsm

STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)
OPERATOR = Principal(actor="client:test-operator", kind=PrincipalKind.OPERATOR)
REVOKE = authorize(OPERATOR, Operation.CERTIFICATE_REVOKE)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture
def client(services):
    with TestClient(create_app(services.settings, services=services)) as http:
        yield http


@pytest.fixture
def cert(services, new_resident, subject_keys):
    rid = new_resident()
    (issued,) = services.issuance.issue(ISSUE, rid, [KeyRequest(CertKind.CARD_SIGN,
                                                                  subject_keys[0])])
    return x509.load_der_x509_certificate(issued.der)


def _state(services):
    with services.uow() as uow:
        head = uow.audit.head()
    with services.uow.engine.connect() as conn:
        revoked = conn.execute(select(func.count()).select_from(certificates)
                               .where(certificates.c.revoked_at.is_not(None))).scalar_one()
        total = conn.execute(select(func.count()).select_from(certificates)).scalar_one()
    return head, revoked, total


# --- CRLs ------------------------------------------------------------------------------------


def test_crl_is_served_with_caching_headers(client, services, cert):
    services.revocation.revoke(REVOKE, format(cert.serial_number, "x"),
                               RevocationReason.KEY_COMPROMISE)
    services.crls.publish(services.crls.scope(CaKind.SIGN, 1, "132217"))
    r = client.get("/crl/sign/g01/132217.crl")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(r.content)
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert r.headers["etag"].strip('"') and r.headers["last-modified"] and r.headers["expires"]
    assert "max-age=" in r.headers["cache-control"]
    again = client.get("/crl/sign/g01/132217.crl", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    for path in ("/crl/sign/g01/132217-delta.crl", "/crl/auth/g01/arl.crl",
                 "/crl/auth/g01/131016.crl"):
        r = client.get(path)
        assert r.status_code == 200, path
        x509.load_der_x509_crl(r.content)


@pytest.mark.parametrize("path", [
    "/crl/sign/g01/999999.crl", "/crl/sign/g01/13221.crl", "/crl/sign/g09/132217.crl",
    "/crl/nope/g01/132217.crl", "/crl/sign/gxx/132217.crl", "/crl/sign/g01/132217.pem",
    "/crl/sign/g01/arl-delta.crl", "/crl/sign/g01/..%2F..%2Fsecrets.crl",
])
def test_unknown_crls_are_404(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


# --- OCSP fuzzing ------------------------------------------------------------------------------


def _ok(response) -> None:
    """A valid OCSP response (HTTP 200) or a client error — never a server error."""
    assert response.status_code < 500, response.status_code
    if response.status_code == 200:
        assert response.headers["content-type"] == "application/ocsp-response"
        parsed = asn1_ocsp.OCSPResponse.load(response.content)
        assert parsed["response_status"].native in (
            "successful", "malformed_request", "internal_error", "try_later", "unauthorized")
        assert parsed["response_status"].native != "internal_error"


def _valid_request(services, cert) -> bytes:
    with services.uow() as uow:
        issuer = x509.load_der_x509_certificate(uow.cas.current(CaKind.SIGN).certificate_der)
    return (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
            .build().public_bytes(Encoding.DER))


@FUZZ
@given(body=st.binary(max_size=600))
def test_arbitrary_post_bodies(client, services, body):
    before = _state(services)
    _ok(client.post("/ocsp", content=body,
                    headers={"content-type": "application/ocsp-request"}))
    assert _state(services) == before


@FUZZ
@given(data=st.data())
def test_mutated_requests(client, services, cert, data):
    valid = bytearray(_valid_request(services, cert))
    before = _state(services)
    mutation = data.draw(st.sampled_from(["flip", "truncate", "extend", "length"]))
    if mutation == "flip":
        i = data.draw(st.integers(0, len(valid) - 1))
        valid[i] ^= data.draw(st.integers(1, 255))
    elif mutation == "truncate":
        valid = valid[:data.draw(st.integers(0, len(valid) - 1))]
    elif mutation == "extend":
        valid += data.draw(st.binary(min_size=1, max_size=64))
    else:  # absurd lengths: long-form length octets claiming gigabytes
        i = data.draw(st.integers(0, len(valid) - 2))
        valid[i + 1:i + 2] = bytes([0x84, 0x7F, 0xFF, 0xFF, 0xFF])
    body = bytes(valid)
    _ok(client.post("/ocsp", content=body, headers={"content-type": "application/ocsp-request"}))
    path = urllib.parse.quote(base64.b64encode(body).decode(), safe="")
    _ok(client.get(f"/ocsp/{path}"))
    assert _state(services) == before


@FUZZ
@given(path=st.text(max_size=300))
def test_arbitrary_get_paths(client, services, path):
    before = _state(services)
    _ok(client.get("/ocsp/" + urllib.parse.quote(path, safe="")))
    assert _state(services) == before


def test_a_valid_request_still_works_after_the_noise(client, services, cert):
    r = client.post("/ocsp", content=_valid_request(services, cert),
                    headers={"content-type": "application/ocsp-request"})
    assert r.status_code == 200
    assert ocsp.load_der_ocsp_response(r.content).certificate_status is ocsp.OCSPCertStatus.GOOD
