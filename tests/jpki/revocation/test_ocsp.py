"""The OCSP responder (RFC 6960, RFC 5019, RFC 8954): in-process, over real HTTP, and against
`openssl ocsp` and pkilint."""

from __future__ import annotations

import base64
import logging
import os
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

from api.composition import ocsp_responder
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import SignatureMismatch
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, RevocationReason
from jpki.registry.residents import EventKind, ResidentEvent
from jpki.revocation.ocsp import (
    INTERNAL_ERROR,
    MALFORMED,
    MAX_CERTS_PER_REQUEST,
    TRY_LATER,
    UNAUTHORIZED,
    ResponseKey,
)
from jpki.validity import JST, jst_date
from tests.checkers import openssl, pkilint_cli, write_pem

pytestmark = pytest.mark.hsm

STATION = Principal.local_operator("test-station")  # the CA operator: no proofing needed
ISSUE = authorize(STATION, Operation.CERTIFICATE_ISSUE)
OPERATOR = Principal(actor="client:test-operator", kind=PrincipalKind.OPERATOR)
REVOKE = authorize(OPERATOR, Operation.CERTIFICATE_REVOKE)


@pytest.fixture
def now_clock(clock):
    """OCSP clients check thisUpdate/nextUpdate against the real time."""
    clock.set(datetime.now(UTC))
    return clock


@pytest.fixture
def pair(services, new_resident, subject_keys, now_clock):
    rid = new_resident()
    certs = {c.kind: c for c in services.issuance.issue(ISSUE, rid, [
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

    services.revocation.revoke(REVOKE, format(sign.serial_number, "x"),
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
        (c,) = services.issuance.issue(ISSUE, rid, [KeyRequest(CertKind.CARD_AUTH,
                                                                 subject_keys[i])])
        serials.append(int(c.serial, 16))
    services.revocation.revoke(REVOKE, format(serials[1], "x"), RevocationReason.SUPERSEDED)
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


def _auth_certificates(services, new_resident, subject_keys, count: int) -> list[str]:
    """The serials of ``count`` card auth certificates, one per new resident, in issuance
    order."""
    serials = []
    for i in range(count):
        rid = new_resident(name=f"山田 {i}")
        (c,) = services.issuance.issue(ISSUE, rid, [KeyRequest(CertKind.CARD_AUTH,
                                                                 subject_keys[i])])
        serials.append(c.serial)
    return serials


def test_presigning_signs_each_missing_response_once_by_chunks(services, new_resident,
                                                               subject_keys, now_clock):
    """``presign_missing`` reads a chunk's statuses at once and stores its responses in one
    transaction: each response says what the store says, is in the cache and in the database,
    and a second run finds nothing to sign."""
    serials = _auth_certificates(services, new_resident, subject_keys, 5)
    services.revocation.revoke(REVOKE, serials[1], RevocationReason.SUPERSEDED)
    services.revocation.revoke(REVOKE, serials[3], RevocationReason.CERTIFICATE_HOLD)
    assert services.ocsp.presign_missing("sha1", batch=2) == 5  # three chunks
    assert services.ocsp.presign_missing("sha1", batch=2) == 0
    with services.uow() as uow:
        generation = uow.cas.current(CaKind.AUTH).id
        stored = {s: uow.ocsp.get(generation, "sha1", s) for s in serials}
    issuer = ca_cert(services, CaKind.AUTH)
    expected = {1: x509.ReasonFlags.superseded, 3: x509.ReasonFlags.certificate_hold}
    for index, serial in enumerate(serials):
        cached = services.ocsp.cache.fresh(ResponseKey(generation, "sha1", int(serial, 16)))
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


def test_presigning_pages_on_from_the_last_certificate_it_saw(services, new_resident,
                                                              subject_keys, now_clock):
    """Each chunk of ``presign_missing`` asks for what is missing after the last certificate of
    the chunk before: one run reads the table once, not once a chunk from its first row (which
    was quadratic in the backlog: docs/scale.md)."""
    serials = _auth_certificates(services, new_resident, subject_keys, 5)
    store = services.ocsp.presigner._store
    now = now_clock.now()
    fresh_from = services.ocsp.cache.fresh_from(now)
    first = store.missing("sha1", fresh_from, now, 2)
    rest = store.missing("sha1", fresh_from, now, 10, first[-1][0])
    assert [s for _, _, s in first + rest] == serials  # in issuance (id) order, no overlap
    assert all(i > first[-1][0] for i, _, _ in rest)
    asked: list[int] = []
    missing = store.missing

    def counting(*args: object) -> object:
        asked.append(int(args[4]))  # type: ignore[call-overload]
        return missing(*args)  # type: ignore[arg-type]

    store.missing = counting  # type: ignore[method-assign]
    try:
        assert services.ocsp.presign_missing("sha1", batch=2) == 5
    finally:
        del store.missing
    ids = [i for i, _, _ in first + rest]
    assert asked == [0, ids[1], ids[3], ids[4]]  # three chunks and the empty look that ends


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
    responder = restarted(services, max_live_signatures=1)
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
    assert restarted(services).respond(plain).der == first.der


def test_responses_loaded_from_the_database_stay_within_the_memory_bound(services, pair):
    _, certs = pair
    plain = [request(certs[CertKind.CARD_SIGN], ca_cert(services)),
             request(certs[CertKind.CARD_AUTH], ca_cert(services, CaKind.AUTH))]
    signed = [services.ocsp.respond(der).der for der in plain]
    small = restarted(services, cache_size=1)
    assert [small.respond(der).der for der in plain] == signed  # both from the database
    assert len(small.cache) == 1


def test_a_request_naming_two_issuers_is_malformed(services, pair):
    """One response is signed by one CA's responder (RFC 6960 §4.2.2.2)."""
    _, certs = pair
    cert_ids = [asn1_ocsp.OCSPRequest.load(request(cert, ca_cert(services, ca)))
                ["tbs_request"]["request_list"][0]["req_cert"]
                for cert, ca in ((certs[CertKind.CARD_SIGN], CaKind.SIGN),
                                 (certs[CertKind.CARD_AUTH], CaKind.AUTH))]
    both = asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": [
        {"req_cert": cert_id} for cert_id in cert_ids]}}).dump()
    assert services.ocsp.respond(both).der == MALFORMED


class _WrongKey:
    """The HSM, handing out the CA key for every label: what a responder certificate renewed
    with another key, or a mix-up of labels, would sign with."""

    def __init__(self, keys, label):
        self._keys, self._label = keys, label

    def rsa_key(self, label):
        return self._keys.rsa_key(self._label)

    def __getattr__(self, name):
        return getattr(self._keys, name)


def test_a_signature_that_does_not_verify_is_neither_served_nor_stored(services, pair, caplog):
    _, certs = pair
    with services.uow() as uow:
        ca_label = uow.cas.current(CaKind.SIGN).key_label
    responder = ocsp_responder(services.uow, services.uow, _WrongKey(services.keys, ca_label),
                               services.clock, services.recipe)
    sign = certs[CertKind.CARD_SIGN]
    with caplog.at_level(logging.ERROR, logger="jpki.ocsp"):
        assert responder.respond(request(sign, ca_cert(services))).der == INTERNAL_ERROR
    assert [r.getMessage() for r in caplog.records] == \
        ["OCSP response not signed: hsm.signature_mismatch"]
    with pytest.raises(SignatureMismatch):  # the batch job stops at the first one
        responder.presign_missing()
    assert stored_response(services, sign) is None
    assert stored_response(services, certs[CertKind.CARD_AUTH]) is None


def test_the_status_change_feed_reports_every_change_once_committed(services, pair, clock):
    from jpki.store.status_feed import SqlStatusChangeFeed

    _, certs = pair
    serial = format(certs[CertKind.CARD_SIGN].serial_number, "x")
    feed = SqlStatusChangeFeed(services.uow)
    before = clock.now()
    assert [c.row.serial for c in feed.changes_since(before)] == []
    clock.advance(seconds=3)
    services.revocation.revoke(REVOKE, serial, RevocationReason.CERTIFICATE_HOLD)
    (change,) = feed.changes_since(before)
    assert (change.row.serial, change.changed_at) == (serial, clock.now())
    assert change.row.revocation_reason is RevocationReason.CERTIFICATE_HOLD
    assert feed.changes_since(clock.now() + timedelta(seconds=1)) == []
    assert [c.row.serial for c in feed.changes_since(None)] == [serial]


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
    services.residents.record_event(
        authorize(operator, Operation.RESIDENT_EVENT), rid, ResidentEvent(
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
    services.revocation.revoke(REVOKE, format(sign.serial_number, "x"),
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


@pytest.mark.timing
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
        services.revocation.revoke(REVOKE, format(sign.serial_number, "x"),
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
    # The server's clock is the suite's fixed START, and its responder certificates were made
    # for a fortnight from then: verify as of that instant, not today's (or the test would stop
    # passing once the fortnight is over).
    args = ["ocsp", "-issuer", str(ca), "-CAfile", str(ca), "-url", live_server.url + "/ocsp",
            "-attime", str(int(live_server.services.clock.now().timestamp())), *extra]
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

    services.revocation.revoke(REVOKE, format(sign.serial_number, "x"),
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


# --- restarts, gaps and what is stored (jpki.change_feed) -----------------------------------


def restarted(services, **kwargs):
    """The responder of a process that just started: nothing kept in memory, no poll made."""
    return ocsp_responder(services.uow, services.uow, services.keys, services.clock,
                          services.recipe, **kwargs)


def stored_response(services, cert, algorithm="sha1"):
    """(DER, thisUpdate, nextUpdate) stored for ``cert`` (of either CA), or None."""
    with services.uow() as uow:
        ca = CaKind.SIGN if cert.issuer == ca_cert(services).subject else CaKind.AUTH
        return uow.ocsp.get(uow.cas.current(ca).id, algorithm, format(cert.serial_number, "x"))


def execute(services, sql, **params):
    from sqlalchemy import text

    with services.uow.engine.begin() as conn:
        conn.execute(text(sql), params)


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=30), timedelta(minutes=20)])
def test_a_new_process_never_serves_a_response_the_store_contradicts(services, pair, clock,
                                                                     after):
    """Revoked while no process refreshed — killed between the acknowledgement and the poll,
    or `jpki cert revoke` while the server was down — then a new process starts, however long
    after: the stored "good" is neither served nor kept."""
    _, certs = pair
    sign = certs[CertKind.CARD_SIGN]
    der = request(sign, ca_cert(services))
    assert status_of(services.ocsp.respond(der).der).certificate_status is \
        ocsp.OCSPCertStatus.GOOD
    services.revocation.revoke(REVOKE, format(sign.serial_number, "x"),
                               RevocationReason.KEY_COMPROMISE)
    clock.advance(seconds=after.total_seconds())
    resp = status_of(restarted(services).respond(der).der)
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason is x509.ReasonFlags.key_compromise
    stored = status_of(stored_response(services, sign)[0])
    assert stored.certificate_status is ocsp.OCSPCertStatus.REVOKED


def test_the_first_poll_of_a_new_process_replaces_what_it_contradicts(services, pair, clock):
    _, certs = pair
    sign, auth = certs[CertKind.CARD_SIGN], certs[CertKind.CARD_AUTH]
    services.ocsp.respond(request(sign, ca_cert(services)))
    services.ocsp.respond(request(auth, ca_cert(services, CaKind.AUTH)))
    services.revocation.revoke(REVOKE, format(sign.serial_number, "x"),
                               RevocationReason.CESSATION_OF_OPERATION)
    clock.advance(minutes=5)
    fresh = restarted(services)
    assert fresh.refresh() == 1  # the stored response of the revoked one, not the other
    assert status_of(stored_response(services, sign)[0]).certificate_status is \
        ocsp.OCSPCertStatus.REVOKED
    assert fresh.refresh() == 0  # re-reading the change signs nothing: what is stored agrees


def test_a_released_hold_is_good_after_a_restart(services, clock, now_clock):
    from tests.holder_kit import new_holder
    from tests.phone_kit import spki

    pool = [rsa.generate_private_key(65537, 2048) for _ in range(5)]
    holder = new_holder(services, pool)
    phone = holder.enrol_phone()
    auth_der = phone.certs[CertKind.MOBILE_AUTH]
    auth = x509.load_der_x509_certificate(auth_der)
    der = request(auth, ca_cert(services, CaKind.AUTH))
    callcentre = Principal(actor="client:test-callcentre", kind=PrincipalKind.CALL_CENTRE)
    services.mobile.hold(authorize(callcentre, Operation.MOBILE_HOLD), holder.resident_id)
    services.ocsp.refresh()
    held = status_of(services.ocsp.respond(der).der)
    assert held.revocation_reason is x509.ReasonFlags.certificate_hold
    # Found: the holder lifts the suspension from the phone while the server is down.
    clock.advance(minutes=1)
    new_sign = pool.pop()
    challenge = services.mobile.new_challenge("lift")[0]
    services.mobile.lift_suspension(holder.sign_as(
        holder.mobile_serials[CertKind.MOBILE_AUTH],
        {"type": "jpki-mobile-lift/1", "challenge": base64.b64encode(challenge).decode(),
         "device": phone.device_id, "sign_public_key": base64.b64encode(spki(new_sign)).decode(),
         "sign_pop": phone.pop(challenge, CertKind.MOBILE_SIGN, key=new_sign)}))
    clock.advance(minutes=3)
    assert status_of(restarted(services).respond(der).der).certificate_status is \
        ocsp.OCSPCertStatus.GOOD


def test_a_failed_poll_leaves_the_window_for_the_next(services, pair, clock, monkeypatch):
    _, certs = pair
    sign = certs[CertKind.CARD_SIGN]
    der = request(sign, ca_cert(services))
    responder = restarted(services, reconcile_seconds=1e9)  # only incremental polls below
    responder.respond(der)
    assert responder.refresh() == 0
    services.revocation.revoke(REVOKE, format(sign.serial_number, "x"),
                               RevocationReason.KEY_COMPROMISE)
    original = responder.refresher._correct
    monkeypatch.setattr(responder.refresher, "_correct", lambda *a: (_ for _ in ()).throw(
        ConnectionError("the database went away")))
    clock.advance(seconds=1)
    with pytest.raises(ConnectionError):
        responder.refresh()
    monkeypatch.setattr(responder.refresher, "_correct", original)
    clock.advance(minutes=2)  # far beyond the look-back of an ordinary poll
    assert responder.refresh() == 1
    assert status_of(responder.respond(der).der).certificate_status is \
        ocsp.OCSPCertStatus.REVOKED


def test_a_change_that_slipped_past_the_polls_is_caught_by_the_reconciliation(
        services, pair, clock):
    """A change stamped long before it became visible (a transaction that lagged, a writer
    whose clock lagged) is missed by the polls' look-back and caught by the periodic
    reconciliation of everything that may still be served."""
    _, certs = pair
    sign = certs[CertKind.CARD_SIGN]
    der = request(sign, ca_cert(services))
    ticks = [0.0]
    responder = restarted(services, reconcile_seconds=60, monotonic=lambda: ticks[0])
    responder.respond(der)
    signed_at = clock.now()
    clock.advance(minutes=10)
    responder.refresh()
    services.revocation.revoke(REVOKE, format(sign.serial_number, "x"),
                               RevocationReason.KEY_COMPROMISE)
    execute(services, "UPDATE certificates SET revocation_recorded_at = :at WHERE serial = :s",
            at=(signed_at + timedelta(minutes=1)).replace(tzinfo=None),
            s=format(sign.serial_number, "x"))
    clock.advance(seconds=1)
    ticks[0] = 1.0
    assert responder.refresh() == 0  # the look-back does not reach that far
    ticks[0] = 61.0
    assert responder.refresh() == 1
    assert status_of(responder.respond(der).der).certificate_status is \
        ocsp.OCSPCertStatus.REVOKED


def test_a_response_signed_before_a_change_cannot_replace_a_later_one(services, pair, clock):
    """A signer that read the status just before a revocation committed stores its "good"
    after the refresh re-signed: the store keeps the later response, and the next poll fixes
    what a process keeps in memory."""
    _, certs = pair
    sign = certs[CertKind.CARD_SIGN]
    der = request(sign, ca_cert(services))
    stale = services.ocsp.respond(der).der
    key_args = stored_response(services, sign)
    clock.advance(seconds=2)
    services.revocation.revoke(REVOKE, format(sign.serial_number, "x"),
                               RevocationReason.KEY_COMPROMISE)
    assert services.ocsp.refresh() == 1
    with services.uow() as uow:
        gid = uow.cas.current(CaKind.SIGN).id
        serial = format(sign.serial_number, "x")
        uow.ocsp.put(gid, "sha1", serial, stale, key_args[1], key_args[2])
        uow.commit()
    assert status_of(stored_response(services, sign)[0]).certificate_status is \
        ocsp.OCSPCertStatus.REVOKED
    # Stored by force (a racing writer that deleted first): the next poll corrects it.
    with services.uow() as uow:
        uow.ocsp.delete([(gid, "sha1", serial)])
        uow.ocsp.put(gid, "sha1", serial, stale, key_args[1], key_args[2])
        uow.commit()
    fresh = restarted(services)
    assert status_of(fresh.respond(der).der).certificate_status is \
        ocsp.OCSPCertStatus.REVOKED


def test_verify_stored_finds_and_repairs_what_contradicts_the_store(services, pair, clock):
    _, certs = pair
    sign, auth = certs[CertKind.CARD_SIGN], certs[CertKind.CARD_AUTH]
    services.ocsp.respond(request(sign, ca_cert(services)))
    services.ocsp.respond(request(sign, ca_cert(services), algorithm=hashes.SHA256()))
    services.ocsp.respond(request(auth, ca_cert(services, CaKind.AUTH)))
    services.revocation.revoke(REVOKE, format(sign.serial_number, "x"),
                               RevocationReason.KEY_COMPROMISE)  # no poll: both stale
    auth_serial = format(auth.serial_number, "x")
    with services.uow() as uow:  # the auth response's signature damaged in the database
        der = bytearray(uow.ocsp.entries_for([auth_serial])[0].der)
    at = bytes(der).index(status_of(bytes(der)).signature)
    der[at + 100] ^= 0x01
    execute(services, "UPDATE ocsp_responses SET der = :d WHERE serial = :s", d=bytes(der),
            s=auth_serial)

    check = services.ocsp.verify_stored(repair=False)
    assert (check.checked, check.expired, check.contradicted, check.resigned) == (3, 0, 3, 0)
    reasons = {(f.serial, f.hash_algorithm): f.why for f in check.findings}
    sign_serial = format(sign.serial_number, "x")
    assert reasons == {(sign_serial, "sha1"): "says good, the store says revoked",
                       (sign_serial, "sha256"): "says good, the store says revoked",
                       (auth_serial, "sha1"): "its signature does not verify"}
    assert services.ocsp.verify_stored(repair=False).contradicted == 3  # nothing changed

    repaired = services.ocsp.verify_stored()
    assert (repaired.contradicted, repaired.resigned) == (3, 3)
    again = services.ocsp.verify_stored(repair=False)
    assert (again.checked, again.contradicted) == (3, 0)
    assert status_of(stored_response(services, sign)[0]).certificate_status is \
        ocsp.OCSPCertStatus.REVOKED

    clock.advance(hours=2)  # every response has expired: nothing to check, nothing served
    later = services.ocsp.verify_stored(repair=False)
    assert (later.checked, later.expired, later.contradicted) == (0, 3, 0)


def test_verify_stored_finds_a_response_for_another_certificate(services, pair):
    _, certs = pair
    sign, auth = certs[CertKind.CARD_SIGN], certs[CertKind.CARD_AUTH]
    services.ocsp.respond(request(sign, ca_cert(services)))
    services.ocsp.respond(request(auth, ca_cert(services, CaKind.AUTH)))
    with services.uow() as uow:  # the signing certificate's row given the auth response
        auth_der = uow.ocsp.entries_for([format(auth.serial_number, "x")])[0].der
    execute(services, "UPDATE ocsp_responses SET der = :d WHERE serial = :s", d=auth_der,
            s=format(sign.serial_number, "x"))
    check = services.ocsp.verify_stored(repair=False)
    assert [f.why for f in check.findings] == ["its CertID names another certificate or issuer"]


def test_what_operators_watch_the_presign_backlog_and_the_feed_lag(services, pair, clock):
    responder = restarted(services)
    assert responder.feed_lag_seconds() is None  # never polled
    assert responder.presign_backlog() == 2  # the pair, nothing signed ahead yet
    assert responder.presign_missing() == 2
    assert responder.presign_backlog() == 0
    responder.refresh()
    clock.advance(seconds=7)
    assert responder.feed_lag_seconds() == 7.0  # polls stopped seven seconds ago
    responder.refresh()
    assert responder.feed_lag_seconds() == 0.0
    clock.advance(minutes=31)  # past half-life: both due again
    assert responder.presign_backlog() == 2


def test_the_backlog_gauge_is_sampled_on_a_large_postgresql_store(services, pair, clock,
                                                                  monkeypatch):
    """Past ten times ``sample_rows`` certificates (the planner's estimate) the backlog is the
    count in a TABLESAMPLE, scaled up; below, or on SQLite, it is the exact count."""
    from jpki.store.repositories import SqlOcspResponses

    responder = restarted(services)
    assert responder.presign_backlog(sample_rows=1) == 2  # estimate unknown or small: exact
    if services.uow.engine.dialect.name != "postgresql":
        return
    execute(services, "ANALYZE certificates")
    fractions: list[float | None] = []
    real = SqlOcspResponses._sample_fraction

    def whole_table_sample(self, sample_rows):
        fractions.append(real(self, 10**6))  # an estimate, for a store this small: none
        return 1.0  # a "sample" of every page: the estimate must equal the count

    monkeypatch.setattr(SqlOcspResponses, "_sample_fraction", whole_table_sample)
    assert responder.presign_backlog(sample_rows=1) == 2
    assert fractions == [None]
    monkeypatch.setattr(SqlOcspResponses, "_sample_fraction", lambda self, rows: 0.5)
    estimates = {responder.presign_backlog(sample_rows=1) for _ in range(20)}
    assert estimates <= {0, 2, 4}  # each page sampled or not: the count scaled by 1/0.5


def test_a_responder_renewed_by_another_process_reaches_this_one_within_a_minute(
        services, pair, clock):
    """The maintenance job renews responder certificates in one process (the lease holder);
    every other worker or node signs with the new one within RESPONDERS_RELOAD_SECONDS."""
    from jpki.authority.ca import CeremonyReport
    from jpki.revocation.ocsp.issuers import RESPONDERS_RELOAD_SECONDS

    ticks = [0.0]
    other = ocsp_responder(services.uow, services.uow, services.keys, services.clock,
                           services.recipe, monotonic=lambda: ticks[0])
    sign = pair[1][CertKind.CARD_SIGN]
    issuer = ca_cert(services)

    def signer() -> bytes:  # a nonce: signed now, by the responder this process knows
        answer = status_of(other.respond(request(sign, issuer, nonce=os.urandom(16))).der)
        assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
        return answer.certificates[0].fingerprint(hashes.SHA256())

    old = signer()
    # Days later the renewal is due, and the maintenance job renews — in another process.
    responder = services.recipe.responder
    clock.advance(days=responder.validity_days - responder.renew_before_days + 1)
    report = CeremonyReport()
    services.cas.ensure_responders(authorize(Principal.system_job("test"),
                                             Operation.RESPONDERS_RENEW), report)
    assert report.created
    ticks[0] += RESPONDERS_RELOAD_SECONDS / 2
    other.refresh()
    assert signer() == old  # within the minute, still the old one (valid for days yet)
    ticks[0] += RESPONDERS_RELOAD_SECONDS
    other.refresh()
    assert signer() != old
