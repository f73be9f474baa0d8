"""bench/scale_serving.py: its check of OCSP answers, and every measurement run end to end on a
tiny population (2,000 certificates, 1-second runs) — the figures are not judged, only that
each is there and every answer checked was right."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from bench.ocsp import issuer_of
from bench.scale_serving import Sampled, check_ocsp
from jpki.model import RevocationReason
from tests.components import missing_component
from tests.conftest import _pg_admin_url, empty_postgres_database

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)
REVOKED_AT = NOW - timedelta(days=3)


@pytest.fixture(scope="module")
def ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scale serving test CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return key, cert


def response(ca: tuple[rsa.RSAPrivateKey, x509.Certificate], serial: int, *,
             revoked: bool, reason: x509.ReasonFlags | None = None) -> bytes:
    """A response signed by the CA itself (the check verifies the signature with the
    certificate the response carries, and that certificate against the issuer)."""
    key, cert = ca
    issuer = issuer_of(1, "sign", cert.public_bytes(serialization.Encoding.DER))
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=issuer.name_hash, issuer_key_hash=issuer.key_hash,
        serial_number=serial, algorithm=hashes.SHA1(),  # RFC 5019 CertIDs
        cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
        this_update=NOW, next_update=NOW + timedelta(hours=1),
        revocation_time=REVOKED_AT if revoked else None,
        revocation_reason=reason if revoked else None)
    signed = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, cert).certificates(
        [cert]).sign(key, hashes.SHA256())
    return signed.public_bytes(serialization.Encoding.DER)


def test_check_ocsp_accepts_what_the_row_says_and_nothing_else(
        ca: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    issuer = issuer_of(1, "sign", ca[1].public_bytes(serialization.Encoding.DER))
    good = Sampled(1, "abc1", 1, None, None)
    superseded = Sampled(2, "abc2", 1, REVOKED_AT, RevocationReason.SUPERSEDED)
    unspecified = Sampled(3, "abc3", 1, REVOKED_AT, RevocationReason.UNSPECIFIED)
    scheduled = Sampled(4, "abc4", 1, NOW + timedelta(days=1), RevocationReason.SUPERSEDED)
    now = datetime.now(UTC)

    assert check_ocsp(response(ca, 0xabc1, revoked=False), good, issuer, now, verify=True) is None
    assert check_ocsp(response(ca, 0xabc4, revoked=False), scheduled, issuer, now,
                      verify=True) is None
    assert check_ocsp(response(ca, 0xabc2, revoked=True, reason=x509.ReasonFlags.superseded),
                      superseded, issuer, now, verify=True) is None
    # RFC 5280 §5.3.1: unspecified is left out of the response
    assert check_ocsp(response(ca, 0xabc3, revoked=True), unspecified, issuer, now,
                      verify=True) is None

    assert check_ocsp(response(ca, 0xabc1, revoked=True), good, issuer, now,
                      verify=False) == "REVOKED instead of GOOD"
    assert check_ocsp(response(ca, 0xabc2, revoked=False), superseded, issuer, now,
                      verify=False) == "GOOD instead of REVOKED"
    assert "wrong reason" in (check_ocsp(
        response(ca, 0xabc2, revoked=True, reason=x509.ReasonFlags.key_compromise),
        superseded, issuer, now, verify=False) or "")
    assert check_ocsp(response(ca, 0xabc2, revoked=False), good, issuer, now,
                      verify=False) == "wrong serial"
    assert check_ocsp(b"\x30\x03\x0a\x01\x03", good, issuer, now,
                      verify=False) == "responseStatus TRY_LATER"
    other = issuer_of(2, "auth", _other_ca().public_bytes(serialization.Encoding.DER))
    assert check_ocsp(response(ca, 0xabc1, revoked=False), good, other, now,
                      verify=False) == "wrong CertID"


def _other_ca() -> x509.Certificate:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(2)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=1))
            .sign(key, hashes.SHA256()))


@pytest.mark.slow
@pytest.mark.hsm
@pytest.mark.postgres
def test_every_measurement_runs_on_a_tiny_population(softhsm_module: str) -> None:
    """``python -m bench.scale_serving`` on 2,000 certificates: issuance (10 pairs each way), a
    real ``jpki serve`` answering OCSP (hot set of 50 and cold misses, wrk for 1 s each, every
    first answer of the hot set and a sample of both checked) and status batches."""
    if shutil.which("wrk") is None:
        missing_component("wrk is not installed (scripts/setup installs it)")
    with empty_postgres_database("scale_serving_probe"):
        pass  # the server answers: the bench creates and drops its own database on it
    env = {k: v for k, v in os.environ.items() if not k.startswith("JPKI_")
           and k != "SOFTHSM2_CONF"}
    env["JPKI_BENCH_POSTGRES_URL"] = _pg_admin_url()
    out = subprocess.run([sys.executable, "-m", "bench.scale_serving", "--certificates", "2000",
                          "--seconds", "1", "--pairs", "10", "--hot", "50", "--json"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout)
    for name in ("issuance_pairs_per_s", "issuance_p50_ms", "issuance_p99_ms",
                 "issuance_batch_pairs_per_s", "ocsp_hot_rps", "ocsp_hot_p99_ms",
                 "ocsp_cold_rps", "ocsp_cold_p99_ms", "status_lookups_per_s",
                 "status_batch_p99_ms", "status_hot_lookups_per_s"):
        assert figures[name] > 0, name
    assert figures["ocsp_checked"] >= 50 + 50  # the hot set's first pass, then samples
    assert figures["ocsp_cold_requests"] > 0
    # The cold set is larger than what one second asks: the rest get their placeholder back.
    assert figures["ocsp_cold_unasked_restored"] > 0
    # What a real row and a signed response weigh (the loaded ones carry placeholders): RSA
    # 2048 signatures and keys put each between 1 and 2 kB (docs/scale.md, storage).
    for name in ("der_card_auth_bytes", "der_card_sign_bytes", "ocsp_response_bytes"):
        assert 1_000 < figures[name] < 2_500, (name, figures[name])
    assert figures["status_batches"] >= 1
    assert 1_900 <= figures["certificates"] <= 2_200
