"""The OCSP responder (RFC 6960, RFC 5019, RFC 8954): in-process, over real HTTP, and against
`openssl ocsp` and pkilint."""

from __future__ import annotations

import base64
import threading
import time as monotonic_time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, time, timedelta
from email.message import Message

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from jpki.issuance import KeyRequest
from jpki.model import CaKind, CertKind, ClientRole, RevocationReason
from jpki.ocsp import MALFORMED, MAX_CERTS_PER_REQUEST, TRY_LATER, UNAUTHORIZED, OcspResponder
from jpki.principals import Principal
from jpki.residents import EventKind, ResidentEvent
from jpki.validity import JST, jst_date
from tests.checkers import openssl, pkilint_cli, write_pem

pytestmark = pytest.mark.hsm

STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
OPERATOR = Principal(actor="client:test-operator", role=ClientRole.OPERATOR)


@pytest.fixture
def now_clock(clock):
    """OCSP clients check thisUpdate/nextUpdate against the real time."""
    clock.set(datetime.now(UTC))
    return clock


@pytest.fixture
def pair(services, new_resident, subject_keys, now_clock):
    rid = new_resident()
    certs = {c.kind: c for c in services.issuance.issue(STATION, rid, [
        KeyRequest(CertKind.CARD_AUTH, subject_keys[0]),
        KeyRequest(CertKind.CARD_SIGN, subject_keys[1])])}
    return rid, {k: x509.load_der_x509_certificate(c.der) for k, c in certs.items()}


def ca_cert(services, ca=CaKind.SIGN):
    with services.uow() as uow:
        return x509.load_der_x509_certificate(uow.cas.current(ca).certificate_der)


SHA1 = hashes.SHA1()  # RFC 5019 §2.1.1: what lightweight clients use in CertIDs


def request(cert, issuer, algorithm=SHA1, nonce=None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


def status_of(der: bytes) -> ocsp.OCSPResponse:
    return ocsp.load_der_ocsp_response(der)


def test_good_revoked_and_unknown(services, pair):
    _, certs = pair
    sign = certs[CertKind.CARD_SIGN]
    ca = ca_cert(services)
    resp = status_of(services.ocsp.respond(request(sign, ca)).der)
    assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert resp.serial_number == sign.serial_number
    # Signed by the delegated responder of the issuing CA, whose certificate is included.
    (responder,) = resp.certificates
    assert responder.issuer == ca.subject
    responder.public_key().verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(),
                                  resp.signature_hash_algorithm)
    assert resp.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        responder.public_key()).digest
    assert resp.next_update_utc - resp.this_update_utc == timedelta(hours=1)

    services.revocation.revoke(OPERATOR, format(sign.serial_number, "x"),
                               RevocationReason.KEY_COMPROMISE)
    services.ocsp.refresh()
    resp = status_of(services.ocsp.respond(request(sign, ca)).der)
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason is x509.ReasonFlags.key_compromise

    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        resp.issuer_name_hash, resp.issuer_key_hash, 12345678901234567890, hashes.SHA1())
    unknown = status_of(services.ocsp.respond(builder.build().public_bytes(Encoding.DER)).der)
    assert unknown.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


def test_sha256_cert_ids_and_the_auth_ca(services, pair):
    _, certs = pair
    auth = certs[CertKind.CARD_AUTH]
    resp = status_of(services.ocsp.respond(request(auth, ca_cert(services, CaKind.AUTH),
                                                   hashes.SHA256())).der)
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert isinstance(resp.hash_algorithm, hashes.SHA256)


def test_several_certificates_in_one_request(services, new_resident, subject_keys, now_clock):
    serials = []
    for i in range(3):
        rid = new_resident(name=f"山田 {i}")
        (c,) = services.issuance.issue(STATION, rid, [KeyRequest(CertKind.CARD_AUTH,
                                                                 subject_keys[i])])
        serials.append(int(c.serial, 16))
    services.revocation.revoke(OPERATOR, format(serials[1], "x"), RevocationReason.SUPERSEDED)
    ca = asn1_ocsp.OCSPRequest.load(request(
        x509.load_der_x509_certificate(c.der), ca_cert(services, CaKind.AUTH)))
    cert_id = ca["tbs_request"]["request_list"][0]["req_cert"]
    req = asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": [
        {"req_cert": {"hash_algorithm": cert_id["hash_algorithm"],
                      "issuer_name_hash": cert_id["issuer_name_hash"],
                      "issuer_key_hash": cert_id["issuer_key_hash"], "serial_number": s}}
        for s in serials]}}).dump()
    answer = services.ocsp.respond(req)
    assert answer.cached is None  # multi-certificate answers are signed live, never cached
    basic = asn1_ocsp.OCSPResponse.load(answer.der)["response_bytes"]["response"].parsed
    states = [r["cert_status"].name for r in basic["tbs_response_data"]["responses"]]
    assert states == ["good", "revoked", "good"]

    # Up to MAX_CERTS_PER_REQUEST CertIDs are answered, one by one; one more is refused whole.
    def asking(count: int) -> bytes:
        return asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": [
            {"req_cert": {"hash_algorithm": cert_id["hash_algorithm"],
                          "issuer_name_hash": cert_id["issuer_name_hash"],
                          "issuer_key_hash": cert_id["issuer_key_hash"],
                          "serial_number": serials[i % 3]}}
            for i in range(count)]}}).dump()

    full = asn1_ocsp.OCSPResponse.load(services.ocsp.respond(asking(MAX_CERTS_PER_REQUEST)).der)
    assert len(full["response_bytes"]["response"].parsed["tbs_response_data"]["responses"]) \
        == MAX_CERTS_PER_REQUEST
    assert services.ocsp.respond(asking(MAX_CERTS_PER_REQUEST + 1)).der == MALFORMED


def test_presigning_signs_each_missing_response_once_by_chunks(services, new_resident,
                                                               subject_keys, now_clock):
    """``presign_missing`` reads a chunk's statuses at once and stores its responses in one
    transaction: each response says what the store says, is in the cache and in the database,
    and a second run finds nothing to sign."""
    serials = []
    for i in range(5):
        rid = new_resident(name=f"山田 {i}")
        (c,) = services.issuance.issue(STATION, rid, [KeyRequest(CertKind.CARD_AUTH,
                                                                 subject_keys[i])])
        serials.append(c.serial)
    services.revocation.revoke(OPERATOR, serials[1], RevocationReason.SUPERSEDED)
    services.revocation.revoke(OPERATOR, serials[3], RevocationReason.CERTIFICATE_HOLD)
    assert services.ocsp.presign_missing("sha1", batch=2) == 5  # three chunks
    assert services.ocsp.presign_missing("sha1", batch=2) == 0
    with services.uow() as uow:
        generation = uow.cas.current(CaKind.AUTH).id
        stored = {s: uow.ocsp.get(generation, "sha1", s) for s in serials}
    issuer = ca_cert(services, CaKind.AUTH)
    expected = {1: x509.ReasonFlags.superseded, 3: x509.ReasonFlags.certificate_hold}
    for index, serial in enumerate(serials):
        cached = services.ocsp.cached((generation, "sha1", int(serial, 16)))
        assert cached is not None and stored[serial] is not None
        assert stored[serial][0] == cached.der
        response = status_of(cached.der)
        assert response.serial_number == int(serial, 16)
        assert response.this_update_utc == now_clock.now()
        if index in expected:
            assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
            assert response.revocation_reason is expected[index]
        else:
            assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
        responder = x509.load_der_x509_certificate(
            response.certificates[0].public_bytes(Encoding.DER))
        assert responder.issuer == issuer.subject
        responder.public_key().verify(response.signature, response.tbs_response_bytes,
                                      padding.PKCS1v15(), response.signature_hash_algorithm)


def test_unauthorized_and_malformed(services, pair):
    _, certs = pair
    other_key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some other CA")])
    other = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(other_key.public_key()).serial_number(1)
             .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
             .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
             .sign(other_key, hashes.SHA256()))
    answer = services.ocsp.respond(request(certs[CertKind.CARD_SIGN], other))
    assert answer.der == UNAUTHORIZED
    for bad in (b"", b"\x30\x03\x02\x01\x01", b"garbage", b"\x30\x84\xff\xff\xff\xff",
                b"\x30" * 5000):
        assert services.ocsp.respond(bad).der == MALFORMED


def test_nonce_is_echoed_and_signed_live(services, pair):
    _, certs = pair
    ca = ca_cert(services)
    answer = services.ocsp.respond(request(certs[CertKind.CARD_SIGN], ca, nonce=b"n" * 16))
    resp = status_of(answer.der)
    assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 16
    assert answer.cached is None


def test_over_the_cap_a_nonce_gets_the_cached_response_and_a_miss_gets_try_later(
        services, pair):
    _, certs = pair
    ca = ca_cert(services)
    responder = OcspResponder(services.uow, services.keys, services.clock, services.recipe,
                              services.cas, max_live_signatures=1)
    plain = request(certs[CertKind.CARD_SIGN], ca)
    cached = responder.respond(plain).der
    assert responder._live.acquire(blocking=False)  # another signature is in flight
    try:
        answer = responder.respond(request(certs[CertKind.CARD_SIGN], ca, nonce=b"x" * 16))
        assert answer.der == cached  # RFC 8954: served without the nonce
        assert responder.respond(request(certs[CertKind.CARD_AUTH],
                                         ca_cert(services, CaKind.AUTH))).der == TRY_LATER
    finally:
        responder._live.release()


def test_responses_are_cached_and_shared_through_the_database(services, pair):
    _, certs = pair
    plain = request(certs[CertKind.CARD_SIGN], ca_cert(services))
    first = services.ocsp.respond(plain)
    assert services.ocsp.respond(plain).der == first.der
    # Another worker (a fresh responder on the same database) serves the same bytes.
    other = OcspResponder(services.uow, services.keys, services.clock, services.recipe,
                          services.cas)
    assert other.respond(plain).der == first.der


def test_a_response_is_resigned_at_half_life(services, pair, clock):
    _, certs = pair
    plain = request(certs[CertKind.CARD_SIGN], ca_cert(services))
    first = status_of(services.ocsp.respond(plain).der)
    clock.advance(minutes=29)
    assert status_of(services.ocsp.respond(plain).der).this_update_utc == first.this_update_utc
    clock.advance(minutes=2)
    assert status_of(services.ocsp.respond(plain).der).this_update_utc > first.this_update_utc


def test_a_scheduled_revocation_caps_next_update(services, pair, operator, clock):
    """A "good" answer must not be cacheable past the instant the certificate is revoked."""
    rid, certs = pair
    departure = jst_date(clock.now()) + timedelta(days=1)
    effective = datetime.combine(departure, time(0), JST)  # 00:00 JST on the departure date
    clock.set(effective - timedelta(minutes=30))
    services.residents.record_event(operator, rid, ResidentEvent(
        EventKind.EMIGRATION, date=departure, address="フランス共和国"))
    services.ocsp.refresh()
    der = request(certs[CertKind.CARD_SIGN], ca_cert(services))
    resp = status_of(services.ocsp.respond(der).der)
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert resp.next_update_utc == effective  # not thisUpdate + 1 hour
    clock.set(effective)
    resp = status_of(services.ocsp.respond(der).der)
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED


def test_pkilint_accepts_good_revoked_and_unknown_responses(services, pair, tmp_path):
    _, certs = pair
    sign = certs[CertKind.CARD_SIGN]
    ca = ca_cert(services)
    good = services.ocsp.respond(request(certs[CertKind.CARD_AUTH],
                                         ca_cert(services, CaKind.AUTH))).der
    services.revocation.revoke(OPERATOR, format(sign.serial_number, "x"),
                               RevocationReason.AFFILIATION_CHANGED)
    revoked = services.ocsp.respond(request(sign, ca)).der
    resp = status_of(revoked)
    unknown = services.ocsp.respond(ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        resp.issuer_name_hash, resp.issuer_key_hash, 987654321, hashes.SHA1()).build()
        .public_bytes(Encoding.DER)).der
    for der in (good, revoked, unknown):
        result = pkilint_cli(tmp_path, "lint_ocsp_response", der, "-s", "WARNING")
        assert result.returncode == 0, result.stdout + result.stderr


# --- over HTTP -------------------------------------------------------------------------------


def http(url: str, data: bytes | None = None, content_type: str = "application/ocsp-request",
         headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_get_and_post_with_caching_headers(live_server, pair):
    services = live_server.services
    _, certs = pair
    der = request(certs[CertKind.CARD_SIGN], ca_cert(services))
    status, headers, body = http(live_server.url + "/ocsp", der)
    assert status == 200 and headers["Content-Type"] == "application/ocsp-response"
    assert status_of(body).certificate_status is ocsp.OCSPCertStatus.GOOD
    assert "max-age=" in headers["Cache-Control"] and "ETag" in headers
    assert "Last-Modified" in headers and "Expires" in headers
    path = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
    status, headers2, body2 = http(f"{live_server.url}/ocsp/{path}")
    assert status == 200 and body2 == body and headers2["ETag"] == headers["ETag"]
    # Nonce requests are answered live and must not be stored by caches.
    status, headers3, _ = http(live_server.url + "/ocsp",
                               request(certs[CertKind.CARD_SIGN], ca_cert(services),
                                       nonce=b"q" * 16))
    assert status == 200 and headers3["Cache-Control"] == "no-store"


def test_a_repeated_request_is_not_served_past_the_half_life(live_server, pair, clock):
    """The HTTP layer answers a request it has seen from the response it got — only while the
    responder calls that response fresh: at half-life the next request gets a re-signed one."""
    services = live_server.services
    _, certs = pair
    der = request(certs[CertKind.CARD_SIGN], ca_cert(services))
    get_url = f"{live_server.url}/ocsp/" + urllib.parse.quote(base64.b64encode(der).decode(),
                                                              safe="")
    first = [http(live_server.url + "/ocsp", der), http(get_url)]
    again = [http(live_server.url + "/ocsp", der), http(get_url)]  # from the memo
    for (_, h1, b1), (_, h2, b2) in zip(first, again, strict=True):
        assert b2 == b1 and h2["ETag"] == h1["ETag"]
        next_update = status_of(b2).next_update_utc
        max_age = int(h2["Cache-Control"].split("max-age=")[1].split(",")[0])
        # Never past nextUpdate (RFC 5019 §6.2), measured on the wall clock the header uses.
        assert 0 < max_age <= (next_update - datetime.now(UTC)).total_seconds()
    clock.advance(seconds=services.ocsp.validity.total_seconds() / 2)
    for url, data in ((live_server.url + "/ocsp", der), (get_url, None)):
        _, headers, body = http(url, data)
        assert headers["ETag"] != first[0][1]["ETag"]
        assert status_of(body).this_update_utc == clock.now()


@pytest.mark.parametrize(("method", "data", "ctype", "expected"), [
    ("POST", b"\x30\x00", "text/plain", 415),
    ("POST", b"\x30" * 10_000, "application/ocsp-request", 413),
    ("PUT", b"", "application/ocsp-request", 405),
])
def test_http_refusals(live_server, method, data, ctype, expected):
    req = urllib.request.Request(live_server.url + "/ocsp", data=data, method=method,
                                 headers={"Content-Type": ctype})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == expected
    assert info.value.headers["Content-Type"] == "application/problem+json"


def test_malformed_get_is_an_ocsp_error_not_a_server_error(live_server):
    for path in ("/ocsp/%%%", "/ocsp/AAAA", "/ocsp/" + "A" * 100, "/ocsp/"):
        status, _, body = http(live_server.url + path)
        assert status == 200 and body == MALFORMED, path
    status, _, _ = http(live_server.url + "/ocsp/" + "A" * 20_000)
    assert status == 414


def test_a_revocation_reaches_ocsp_within_a_second(live_server, pair):
    services = live_server.services
    _, certs = pair
    sign = certs[CertKind.CARD_SIGN]
    der = request(sign, ca_cert(services))
    url = live_server.url + "/ocsp/" + urllib.parse.quote(base64.b64encode(der).decode(),
                                                          safe="")
    assert status_of(http(url)[2]).certificate_status is ocsp.OCSPCertStatus.GOOD
    # Revoke from another thread, as another process would, and time the change.
    done = threading.Event()

    def revoke() -> None:
        services.revocation.revoke(OPERATOR, format(sign.serial_number, "x"),
                                   RevocationReason.CERTIFICATE_HOLD)
        done.set()

    threading.Thread(target=revoke).start()
    done.wait(10)
    acknowledged = monotonic_time.monotonic()
    while True:
        resp = status_of(http(url)[2])
        if resp.certificate_status is ocsp.OCSPCertStatus.REVOKED:
            break
        elapsed = monotonic_time.monotonic() - acknowledged
        assert elapsed < 1.0, "still good a second after the revocation"
        monotonic_time.sleep(0.02)
    assert monotonic_time.monotonic() - acknowledged < 1.0
    assert resp.revocation_reason is x509.ReasonFlags.certificate_hold


# --- openssl ocsp as the client --------------------------------------------------------------


def run_openssl_ocsp(live_server, tmp_path, issuer, *targets, extra=()):
    ca = write_pem(tmp_path / "issuer.pem", issuer.public_bytes(Encoding.DER))
    args = ["ocsp", "-issuer", str(ca), "-CAfile", str(ca), "-url", live_server.url + "/ocsp",
            *extra]
    for target in targets:
        if isinstance(target, int):
            args += ["-serial", str(target)]
        else:
            path = write_pem(tmp_path / f"c{target.serial_number}.pem",
                             target.public_bytes(Encoding.DER))
            args += ["-cert", str(path)]
    return openssl(*args, timeout=60)


def test_openssl_ocsp_good_revoked_unknown(live_server, pair, tmp_path):
    services = live_server.services
    _, certs = pair
    sign, auth = certs[CertKind.CARD_SIGN], certs[CertKind.CARD_AUTH]
    ca = ca_cert(services)
    result = run_openssl_ocsp(live_server, tmp_path, ca, sign)
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr
    assert f"c{sign.serial_number}.pem: good" in result.stdout

    services.revocation.revoke(OPERATOR, format(sign.serial_number, "x"),
                               RevocationReason.KEY_COMPROMISE)
    services.ocsp.refresh()
    for extra in ((), ("-no_nonce",)):  # live-signed (nonce) and pre-signed answers
        result = run_openssl_ocsp(live_server, tmp_path, ca, sign, extra=extra)
        assert result.returncode == 0 and "Response verify OK" in result.stderr, result.stderr
        assert f"c{sign.serial_number}.pem: revoked" in result.stdout
        assert "Reason: keyCompromise" in result.stdout

    result = run_openssl_ocsp(live_server, tmp_path, ca, 0x1234567890ABCDEF1234)
    assert result.returncode == 0 and "Response verify OK" in result.stderr, result.stderr
    assert ": unknown" in result.stdout

    # Several certificates in one request (and SHA-256 CertIDs).
    auth_ca = ca_cert(services, CaKind.AUTH)
    result = run_openssl_ocsp(live_server, tmp_path, auth_ca, auth, 0x42 << 70,
                              extra=("-sha256",))
    assert result.returncode == 0 and "Response verify OK" in result.stderr, result.stderr
    assert f"c{auth.serial_number}.pem: good" in result.stdout and ": unknown" in result.stdout


def test_openssl_reports_an_issuer_we_do_not_serve(live_server, pair, tmp_path):
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Elsewhere")])
    other = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(key.public_key()).serial_number(7)
             .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
             .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC)).sign(key, hashes.SHA256()))
    result = run_openssl_ocsp(live_server, tmp_path, other, 99)
    assert "unauthorized" in (result.stdout + result.stderr).lower()
