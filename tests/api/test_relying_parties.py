"""Relying parties over HTTP: registration and credentials, status, linkage, consent and the
latest basic 4 information, withdrawal, DV support, rate limits — and for every refusal the exact
problem, an audit record of it, no personal data and nothing else changed.

Every test runs on SQLite and on PostgreSQL (the ``services`` fixture), on the real HSM.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.basic4 import normalize_address, normalize_name
from jpki.model import AuditRecord, CertKind, ClientRole, RevocationReason
from jpki.rate_limits import TokenBuckets
from jpki.registry.cards import CardEvent
from jpki.registry.dv_support import DvCategory
from tests.api.harness import Api, basic_auth
from tests.holder_kit import (
    ITEMS_ALL,
    Holder,
    b64,
    consent_statement,
    new_holder,
    withdrawal_statement,
)
from tests.phone_kit import signed

pytestmark = pytest.mark.hsm

STATUS, LINKAGE, BASIC4 = "/v1/status", "/v1/linkage", "/v1/basic4"
WITHDRAW, PING = "/v1/consents/withdrawals", "/v1/rp/ping"
REGISTER = "/v1/operators/relying-parties"
OPERATOR = Principal(actor="client:test-operator", kind=PrincipalKind.OPERATOR)
CARD_EVENT = authorize(OPERATOR, Operation.CARD_EVENT)
DV_REQUEST = authorize(OPERATOR, Operation.DV_REQUEST)
# The second person of the two-person rule (jpki.registry.dv_support).
DV_DECIDE = authorize(Principal.local_operator("second"), Operation.DV_DECIDE)
REVOKE = authorize(OPERATOR, Operation.CERTIFICATE_REVOKE)
CALLCENTRE = Principal(actor="client:test-callcentre", kind=PrincipalKind.CALL_CENTRE)
HOLD = authorize(CALLCENTRE, Operation.MOBILE_HOLD)
REFUSED = frozenset({"rp.refused"})
HOME = "東京都清瀬市中里一丁目２番３号 コーポ秘密１０２"
NEW_HOME = "東京都千代田区霞が関二丁目１番２号 官舎秘密５０５"
PERSON = {"name": "瀬戸内 ひかり", "birth_date": "1990-01-02", "address": HOME}
PROTECTED = {"name": "秘匿 さくら", "birth_date": "1990-01-02",
             "address": "東京都清瀬市中里五丁目９番９号 避難先"}


@pytest.fixture(scope="module")
def key_pool() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(65537, 2048) for _ in range(40)]


@pytest.fixture
def keys(key_pool: list[rsa.RSAPrivateKey]) -> list[rsa.RSAPrivateKey]:
    return list(key_pool)  # a fresh pool per test; every test has a fresh database


@dataclass(frozen=True)
class Rp:
    id: str
    client_id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return basic_auth(self.client_id, self.secret)


def register_rp(api: Api, *, scopes: tuple[str, ...] = ("status", "linkage", "basic4"),
                purposes: tuple[str, ...] = ("test", "account_opening"),
                kind: str = "platform_operator", parent: str | None = None,
                name: str = "株式会社検証") -> Rp:
    body: dict[str, Any] = {"name": name, "kind": kind, "purposes": list(purposes),
                            "scopes": list(scopes)}
    if parent:
        body["parent_id"] = parent
    r = api.http.post(REGISTER, json=body, headers=api.op)
    assert r.status_code == 201, r.text
    doc = r.json()
    return Rp(doc["relying_party"]["id"], doc["client_id"], doc["client_secret"])


def person(api: Api, keys: list[rsa.RSAPrivateKey], data: dict[str, str] = PERSON,
           **kw: Any) -> Holder:
    api.remember(data)
    return new_holder(api.services, keys, name=data["name"], address=data["address"], **kw)


def records(api: Api, since: int, action: str | None = None) -> list[AuditRecord]:
    return [r for r in api.audit_since(since) if action is None or r.action == action]


def refused(api: Api, response: httpx.Response, status: int, code: str,
            before: dict[str, Any], *, also: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The exact problem, no personal data, nothing changed but one ``rp.refused`` record
    (plus the actions in ``also``) that names the code and holds no personal data."""
    body = api.problem(response, status, code)
    new = api.unchanged(before, audited=REFUSED | also)
    refusals = [r for r in new if r.action == "rp.refused"]
    assert len(refusals) == 1, [r.action for r in new]
    payload = json.loads(refusals[0].payload)
    assert payload["code"] == code and payload["status"] == status, payload
    return body


def head(api: Api) -> int:
    with api.services.uow() as uow:
        return uow.audit.head()[0]


# --- registration and credentials -------------------------------------------------------------


def test_operators_register_platform_operators_and_service_providers(api: Api) -> None:
    pf = register_rp(api, scopes=("status",))
    sp = register_rp(api, kind="service_provider", parent=pf.id, name="SP Bank",
                     purposes=("account_opening",))
    listed = {p["id"]: p for p in api.http.get(REGISTER, headers=api.op).json()}
    assert listed[sp.id]["parent_id"] == pf.id and listed[sp.id]["kind"] == "service_provider"
    assert listed[pf.id]["clients"][0]["client_id"] == pf.client_id
    assert listed[pf.id]["clients"][0]["scopes"] == ["status"]
    # The secret is stored only as an HMAC under the token's client-secret key.
    with api.services.uow() as uow:
        client = uow.clients.get_by_client_id(pf.client_id)
        assert client is not None
        assert re.fullmatch(r"hmac-sha256\$client-secret-mac\$[0-9a-f]{64}", client.secret_hash)
        assert pf.secret not in client.secret_hash

    kiyose = api.caller(ClientRole.OPERATOR, "municipality:132217").headers
    station = api.station
    before = api.snapshot()
    cases: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        ({"kind": "service_provider"}, api.op, 400, "rp.invalid"),  # no parent
        ({"kind": "service_provider", "parent_id": sp.id}, api.op, 400, "rp.invalid"),
        ({"parent_id": pf.id}, api.op, 400, "rp.invalid"),  # a PF has no parent
        # A purpose code has its alphabet at the edge (api.request_fields), like every id.
        ({"purposes": ["Account Opening"]}, api.op, 422, "request.invalid"),
        ({"scopes": ["everything"]}, api.op, 422, "request.invalid"),
        ({"kind": "bank"}, api.op, 422, "request.invalid"),
        # A municipality's operator does not certify businesses.
        ({}, kiyose, 403, "auth.scope_missing"),
        ({}, station, 403, "auth.role_forbidden"),
    ]
    for change, headers, status, code in cases:
        body = {"name": "X", "kind": "platform_operator", "purposes": ["test"],
                "scopes": ["status"], **change}
        api.problem(api.http.post(REGISTER, json=body, headers=headers), status, code)
    api.unchanged(before)


def test_the_cli_route_for_plain_rp_clients_is_closed(api: Api) -> None:
    from jpki.errors import InvalidInput
    from jpki.model import ClientRole

    with pytest.raises(InvalidInput):
        api.services.clients.create(
            authorize(api.operator, Operation.CLIENT_CREATE), name="bare rp", role=ClientRole.RP,
            scopes=["status"])


def test_a_rotated_secret_stays_valid_until_its_deadline_and_not_after(api: Api) -> None:
    rp = register_rp(api)
    old = rp.headers
    assert api.http.get(PING, headers=old).json() == {"ok": True}  # now cached as verified
    r = api.http.post(f"{REGISTER}/{rp.id}/secret-rotations", json={"overlap_seconds": 3600},
                      headers=api.op)
    assert r.status_code == 201, r.text
    new = basic_auth(rp.client_id, r.json()["client_secret"])
    assert r.json()["previous_valid_until"].startswith("2026-11-27T02:00:00")
    for headers in (old, new, old, new):
        assert api.http.get(PING, headers=headers).status_code == 200
    api.services.clock.advance(seconds=3601)
    # The old secret was verified (and cached) a moment ago: the deadline still refuses it.
    api.problem(api.http.get(PING, headers=old), 401, "auth.invalid_credentials")
    assert api.http.get(PING, headers=new).status_code == 200

    # Without overlap the replaced secret is refused at once, cached or not.
    r = api.http.post(f"{REGISTER}/{rp.id}/secret-rotations", json={"overlap_seconds": 0},
                      headers=api.op)
    newest = basic_auth(rp.client_id, r.json()["client_secret"])
    api.problem(api.http.get(PING, headers=new), 401, "auth.invalid_credentials")
    assert api.http.get(PING, headers=newest).status_code == 200


def test_suspension_refuses_at_once_and_a_platform_operator_takes_its_providers_along(
        api: Api) -> None:
    pf = register_rp(api)
    sp = register_rp(api, kind="service_provider", parent=pf.id, purposes=("test",))
    for rp in (pf, sp):
        assert api.http.get(PING, headers=rp.headers).status_code == 200  # cached secrets
    r = api.http.post(f"{REGISTER}/{pf.id}/status", json={"status": "suspended"},
                      headers=api.op)
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    assert r.json()["clients"][0]["status"] == "suspended"

    before = api.snapshot()
    refused(api, api.http.post(STATUS, json={"purpose": "test", "serials": ["1"]},
                               headers=pf.headers), 403, "auth.client_suspended", before)
    before = api.snapshot()
    refused(api, api.http.post(STATUS, json={"purpose": "test", "serials": ["1"]},
                               headers=sp.headers), 403, "rp.suspended", before)
    # Registering a service provider under a suspended platform operator is refused too.
    api.problem(api.http.post(REGISTER, json={
        "name": "Late SP", "kind": "service_provider", "parent_id": pf.id,
        "purposes": ["test"], "scopes": ["status"]}, headers=api.op), 403, "rp.suspended")

    r = api.http.post(f"{REGISTER}/{pf.id}/status", json={"status": "active"}, headers=api.op)
    assert r.json()["status"] == "active"
    for rp in (pf, sp):
        assert api.http.get(PING, headers=rp.headers).status_code == 200


def test_unauthenticated_and_unauthorised_calls_are_refused_and_audited(api: Api) -> None:
    rp = register_rp(api, scopes=("status",))
    body = {"purpose": "test", "consent_id": "cs_" + "0" * 24}
    cases = [
        ({}, 401, "auth.required", "anonymous", None),
        (basic_auth(rp.client_id, "wrong"), 401, "auth.invalid_credentials", "anonymous",
         rp.client_id),
        (api.op, 403, "auth.role_forbidden", "client:", None),
        (rp.headers, 403, "auth.scope_missing", f"client:{rp.client_id}", None),
    ]
    for headers, status, code, actor, claimed in cases:
        before = api.snapshot()
        refused(api, api.http.post(BASIC4, json=body, headers=headers), status, code, before)
        (record,) = records(api, before["audit_head"][0])
        assert record.actor.startswith(actor) and record.subject == "POST /v1/basic4"
        assert json.loads(record.payload)["claimed_client"] == claimed


# --- status -------------------------------------------------------------------------------


def test_status_of_card_and_mobile_certificates_with_reason_and_time(
        api: Api, keys: list[rsa.RSAPrivateKey]) -> None:
    rp = register_rp(api, scopes=("status",))
    h = person(api, keys)
    phone = h.enrol_phone()
    assert phone.device_id
    sign, auth = h.serial(CertKind.CARD_SIGN), h.serial(CertKind.CARD_AUTH)
    msign = h.mobile_serials[CertKind.MOBILE_SIGN]
    api.services.mobile.hold(HOLD, h.resident_id)  # a lost phone
    api.services.clock.advance(seconds=10)
    unknown = "7fffffffffffffff0001"
    since = head(api)
    r = api.http.post(STATUS, headers=rp.headers, json={
        "purpose": "test", "serials": [sign.upper(), auth, msign, unknown, sign]})
    assert r.status_code == 200, r.text
    out = r.json()["results"]
    assert [x["serial"] for x in out] == [sign, auth, msign, unknown, sign]
    assert out[0] | {"not_after": None} == {
        "serial": sign, "status": "good", "reason": None, "revoked_at": None, "form": "card",
        "usage": "sign", "not_after": None, "expired": False}
    assert out[1]["usage"] == "auth" and out[1]["status"] == "good"
    assert (out[2]["status"], out[2]["reason"], out[2]["form"]) == \
        ("revoked", "certificateHold", "mobile")
    assert out[2]["revoked_at"] == "2026-11-27T01:00:00Z"
    assert out[3] == {"serial": unknown, "status": "unknown", "reason": None,
                      "revoked_at": None, "form": None, "usage": None, "not_after": None,
                      "expired": None}
    (record,) = records(api, since)
    assert record.action == "rp.status" and record.subject == rp.id
    payload = json.loads(record.payload)
    assert (payload["purpose"], payload["count"], payload["unknown"]) == ("test", 5, 1)


def test_status_batches_up_to_1000_and_precise_refusals(api: Api) -> None:
    rp = register_rp(api, scopes=("status", "linkage"))
    serials = [format((1 << 64) + i, "x") for i in range(1000)]
    r = api.http.post(STATUS, headers=rp.headers, json={"purpose": "test", "serials": serials})
    assert r.status_code == 200 and len(r.json()["results"]) == 1000
    assert {x["status"] for x in r.json()["results"]} == {"unknown"}

    cases: list[tuple[Any, int, str]] = [
        ({"purpose": "test", "serials": [*serials, "1"]}, 413, "status.batch_too_large"),
        ({"purpose": "test", "serials": []}, 400, "status.batch_empty"),
        ({"purpose": "test", "serials": ["12", "xyz"]}, 400, "serial.invalid"),
        ({"purpose": "marketing", "serials": ["12"]}, 403, "rp.purpose_undeclared"),
        ({"purpose": "test", "serials": ["12"], "extra": 1}, 422, "request.invalid"),
        ({"serials": ["12"]}, 422, "request.invalid"),
    ]
    for body, status, code in cases:
        before = api.snapshot()
        problem = refused(api, api.http.post(STATUS, headers=rp.headers, json=body), status,
                          code, before)
        if code == "serial.invalid":
            assert problem["context"] == {"field": "serials", "index": 1}
    before = api.snapshot()
    refused(api, api.http.post(STATUS, headers={**rp.headers,
                                                "content-type": "application/json"},
                               content=b'{"purpose": "test", "serials": ['), 400,
            "request.malformed", before)
    before = api.snapshot()
    refused(api, api.http.post(STATUS, headers=rp.headers, content=b"x" * 70_000), 413,
            "request.too_large", before)


def test_rate_limit_answers_429_with_retry_after(api: Api) -> None:
    rp = register_rp(api)
    now = [0.0]
    api.services.relying_parties.buckets = TokenBuckets(api.services.limits, "rp", 2, 3,
                                                        clock=lambda: now[0])
    body = {"purpose": "test", "serials": ["12"]}
    for _ in range(3):
        assert api.http.post(STATUS, headers=rp.headers, json=body).status_code == 200
    before = api.snapshot()
    r = api.http.post(STATUS, headers=rp.headers, json=body)
    refused(api, r, 429, "rp.rate_limited", before)
    assert r.headers["retry-after"] == "1"
    # Another relying party has its own bucket.
    assert api.http.post(STATUS, headers=register_rp(api).headers, json=body).status_code == 200
    now[0] += 0.5
    assert api.http.post(STATUS, headers=rp.headers, json=body).status_code == 200
    api.problem(api.http.post(STATUS, headers=rp.headers, json=body), 429, "rp.rate_limited")


# --- linkage ------------------------------------------------------------------------------


def test_linkage_follows_reissue_and_renewal_with_the_signature_as_evidence(
        api: Api, keys: list[rsa.RSAPrivateKey]) -> None:
    rp = register_rp(api, scopes=("linkage",))
    h = person(api, keys)
    first, auth = h.serial(), h.serial(CertKind.CARD_AUTH)
    contract = h.sign({"contract": "loan 42"})  # a signature the relying party verified
    login = h.sign({"challenge": "abc"}, kind=CertKind.CARD_AUTH)

    def link(serial: str, evidence: bytes) -> dict[str, Any]:
        r = api.http.post(LINKAGE, headers=rp.headers, json={
            "purpose": "test", "serial": serial, "signed_data": b64(evidence)})
        assert r.status_code == 200, r.text
        return dict(r.json())

    assert link(first, contract) == {
        "serial": first, "form": "card", "usage": "sign", "status": "good", "successors": [],
        "current_serial": first, "sibling": auth, "current_sibling": auth}

    api.remember({"address": NEW_HOME})
    api.services.clock.advance(minutes=1)
    h.move(NEW_HOME)  # the signing certificate is revoked: no current one until re-issue
    answer = link(first, contract)
    assert (answer["status"], answer["successors"], answer["current_serial"]) == \
        ("revoked", [], None)
    api.services.clock.advance(minutes=1)
    (second,) = h.issue(CertKind.CARD_SIGN)
    answer = link(first, contract)
    assert (answer["successors"], answer["current_serial"], answer["current_sibling"]) == \
        ([second.serial], second.serial, auth)

    # Renewal, from three months before expiry: superseded old→new.
    api.services.clock.set(second.not_after - timedelta(days=60))
    third = h.renew(CertKind.CARD_SIGN)
    answer = link(first, contract)
    assert (answer["successors"], answer["current_serial"]) == \
        ([second.serial, third.serial], third.serial)
    # The auth certificate's line, from a signature made with the auth key: its sibling is
    # the newest signing certificate on the card (each issuance re-links the partner).
    answer = link(auth, login)
    assert (answer["usage"], answer["current_serial"], answer["sibling"]) == \
        ("auth", auth, third.serial)
    since = head(api)
    # The old certificate's signature, made while it was valid, is evidence for it too.
    answer = link(second.serial, h.sign_as(second.serial, {"doc": 1}, at=second.not_before))
    assert answer["successors"] == [third.serial] and answer["status"] == "revoked"
    (record,) = records(api, since)
    assert record.action == "rp.linkage" and record.subject == second.serial
    assert json.loads(record.payload)["evidence"] == "signature"


def test_linkage_needs_evidence_and_never_reveals_whether_a_serial_exists(
        api: Api, keys: list[rsa.RSAPrivateKey]) -> None:
    rp = register_rp(api, scopes=("linkage",))
    other_rp = register_rp(api, scopes=("linkage", "basic4"))
    h = person(api, keys)
    stranger = person(api, keys, PROTECTED)
    mine = h.sign({"contract": 1})
    forged = bytearray(mine)
    forged[-5] ^= 0x01
    outsider_key = keys.pop()
    outsider = self_signed(outsider_key, int(h.serial(), 16))  # our serial, not our certificate
    api.services.clock.advance(minutes=1)
    late = h.sign({"contract": 2}, at=api.services.clock.now() + timedelta(hours=1))

    def call(**body: Any) -> httpx.Response:
        return api.http.post(LINKAGE, headers=rp.headers, json={"purpose": "test", **body})

    answers = {}
    for name, body, status, code in [
        ("no evidence", {"serial": h.serial()}, 400, "linkage.evidence_missing"),
        ("both", {"serial": h.serial(), "signed_data": b64(mine),
                  "consent_id": "cs_" + "1" * 24}, 400, "linkage.evidence_missing"),
        ("forged", {"serial": h.serial(), "signed_data": b64(bytes(forged))}, 400,
         "cms.invalid"),
        ("not base64", {"serial": h.serial(), "signed_data": "*" * 20}, 400, "cms.invalid"),
        ("another's signature", {"serial": h.serial(),
                                 "signed_data": b64(stranger.sign({"x": 1}))}, 403,
         "linkage.evidence_refused"),
        ("no such serial", {"serial": "7fffffffffffffff0002", "signed_data": b64(mine)}, 403,
         "linkage.evidence_refused"),
        ("a certificate we did not issue", {
            "serial": h.serial(), "signed_data": b64(signed({"x": 1}, outsider, outsider_key,
                                                           api.services.clock.now()))}, 403,
         "linkage.evidence_refused"),
        ("signed in the future", {"serial": h.serial(), "signed_data": b64(late)}, 403,
         "linkage.evidence_refused"),
        ("another party's consent", {"serial": h.serial(), "consent_id": "cs_" + "2" * 24},
         404, "consent.not_found"),
        ("bad serial", {"serial": "zz", "signed_data": b64(mine)}, 400, "serial.invalid"),
    ]:
        before = api.snapshot()
        answers[name] = refused(api, call(**body), status, code, before)
    # A serial that exists and one that does not get the very same answer.
    assert answers["another's signature"] == answers["no such serial"]
    # A consent id of another relying party is as unknown as a made-up one.
    consent = submit_consent(api, other_rp, h)
    before = api.snapshot()
    refused(api, call(serial=h.serial(), consent_id=consent["consent_id"]), 404,
            "consent.not_found", before)


def self_signed(key: rsa.RSAPrivateKey, serial: int) -> bytes:
    from datetime import UTC, datetime

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not ours")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


def test_linkage_with_a_consent_covers_its_certificate_and_successors(
        api: Api, keys: list[rsa.RSAPrivateKey]) -> None:
    rp = register_rp(api)
    h = person(api, keys)
    consent = submit_consent(api, rp, h)
    first = h.serial()
    api.services.clock.advance(minutes=1)
    api.remember({"address": NEW_HOME})
    h.move(NEW_HOME)
    (second,) = h.issue(CertKind.CARD_SIGN)
    for serial, successors in ((first, [second.serial]), (second.serial, [])):
        r = api.http.post(LINKAGE, headers=rp.headers, json={
            "purpose": "test", "serial": serial, "consent_id": consent["consent_id"]})
        assert r.status_code == 200, r.text
        assert (r.json()["successors"], r.json()["current_serial"]) == \
            (successors, second.serial)
    # The auth certificate was never signed with for this relying party: not covered.
    before = api.snapshot()
    refused(api, api.http.post(LINKAGE, headers=rp.headers, json={
        "purpose": "test", "serial": h.serial(CertKind.CARD_AUTH),
        "consent_id": consent["consent_id"]}), 403, "linkage.evidence_refused", before)


# --- consent and the latest basic 4 information ---------------------------------------------


def submit_consent(api: Api, rp: Rp, h: Holder, *, items: list[str] | None = None,
                   kind: CertKind = CertKind.CARD_SIGN, purpose: str = "test") -> dict[str, Any]:
    statement = consent_statement(rp.id, api.services.clock.now(), items=items, purpose=purpose)
    r = api.http.post(BASIC4, headers=rp.headers, json={
        "purpose": purpose, "consent": b64(h.sign(statement, kind=kind))})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_consent_returns_only_the_consented_items_and_later_calls_the_latest(
        api: Api, keys: list[rsa.RSAPrivateKey]) -> None:
    rp = register_rp(api)
    h = person(api, keys)
    since = head(api)
    first = submit_consent(api, rp, h, items=["address", "name"])
    assert first["current_signing_serial"] == h.serial()
    # As the resident record holds them (the normalised forms the certificate carries).
    assert first["items"] == {"name": normalize_name(PERSON["name"]),
                              "address": normalize_address(HOME)}
    assert first["consent_id"].startswith("cs_")
    actions = [r.action for r in records(api, since)]
    assert actions == ["consent.recorded", "basic4.provided"]
    provided = json.loads(records(api, since, "basic4.provided")[0].payload)
    assert provided == {"relying_party": rp.id, "resident": h.resident_id,
                        "items": ["name", "address"], "purpose": "test",
                        "current": h.serial()}

    # A standing consent: the holder moves; while the signing certificate is revoked and no
    # new one issued there is nothing; then the new address and the new serial.
    standing = {"purpose": "test", "consent_id": first["consent_id"]}
    api.services.clock.advance(minutes=1)
    api.remember({"address": NEW_HOME})
    h.move(NEW_HOME)
    before = api.snapshot()
    nothing = refused(api, api.http.post(BASIC4, headers=rp.headers, json=standing), 404,
                      "basic4.not_available", before)
    (new_sign,) = h.issue(CertKind.CARD_SIGN)
    r = api.http.post(BASIC4, headers=rp.headers, json=standing)
    assert r.status_code == 200, r.text
    assert r.json()["items"] == {"name": normalize_name(PERSON["name"]),
                                 "address": normalize_address(NEW_HOME)}
    assert r.json()["current_signing_serial"] == new_sign.serial

    # All four items, consented with the phone's signing key.
    phone_rp = register_rp(api)
    h.enrol_phone()
    everything = submit_consent(api, phone_rp, h, items=ITEMS_ALL, kind=CertKind.MOBILE_SIGN)
    assert set(everything["items"]) == set(ITEMS_ALL)
    assert everything["items"]["birth_date"] == "1990-01-02" and everything["items"]["sex"] == 1
    assert everything["current_signing_serial"] == h.mobile_serials[CertKind.MOBILE_SIGN]
    assert nothing["detail"] == "no information can be provided under this consent now"


def test_a_phone_consent_follows_the_card_when_the_phone_line_has_ended(
        api: Api, keys: list[rsa.RSAPrivateKey]) -> None:
    rp = register_rp(api)
    h = person(api, keys)
    h.enrol_phone()
    consent = submit_consent(api, rp, h, kind=CertKind.MOBILE_SIGN)
    api.services.clock.advance(minutes=1)
    api.remember({"address": NEW_HOME})
    h.move(NEW_HOME)  # revokes the card signing certificate and, by cascade, the mobile one
    (card,) = h.issue(CertKind.CARD_SIGN)
    r = api.http.post(BASIC4, headers=rp.headers,
                      json={"purpose": "test", "consent_id": consent["consent_id"]})
    assert r.status_code == 200, r.text
    assert r.json()["current_signing_serial"] == card.serial


def test_bad_consents_are_refused_precisely_audited_and_change_nothing(
        api: Api, keys: list[rsa.RSAPrivateKey]) -> None:
    rp = register_rp(api)
    other = register_rp(api)
    no_basic4 = register_rp(api, scopes=("status",))
    h = person(api, keys)
    now = api.services.clock.now()

    def statement(**kw: Any) -> dict[str, Any]:
        return consent_statement(rp.id, now, **kw)

    good = h.sign(statement())
    tampered = bytearray(good)
    tampered[-7] ^= 0x40
    auth_signed = h.sign(statement(), kind=CertKind.CARD_AUTH)
    outsider_key = keys.pop()
    outsider = signed(statement(), self_signed(outsider_key, 12345), outsider_key, now)
    too_early = h.sign(statement(), at=now - timedelta(days=1))  # before its notBefore
    future = h.sign(statement(), at=now + timedelta(minutes=30))
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("for another relying party", {"consent": b64(h.sign(
            consent_statement(other.id, now)))}, 403, "consent.wrong_relying_party"),
        ("forged", {"consent": b64(bytes(tampered))}, 400, "cms.invalid"),
        ("unsigned", {"consent": b64(json.dumps(statement()).encode())}, 400, "cms.invalid"),
        ("expired", {"consent": b64(h.sign(statement(expires_in=timedelta(seconds=-1))))},
         422, "consent.expired"),
        ("too long", {"consent": b64(h.sign(statement(expires_in=timedelta(days=400))))},
         400, "consent.invalid"),
        ("no such item", {"consent": b64(h.sign(statement(items=["name", "income"])))}, 400,
         "consent.invalid"),
        ("an extra field", {"consent": b64(h.sign(statement(note="x")))}, 400,
         "consent.invalid"),
        ("a short nonce", {"consent": b64(h.sign(statement(nonce="abc")))}, 400,
         "consent.invalid"),
        ("not JSON", {"consent": b64(h.sign_bytes(b"\xff\xfe"))}, 400, "consent.invalid"),
        ("undeclared purpose", {"consent": b64(h.sign(statement(purpose="marketing")))}, 403,
         "rp.purpose_undeclared"),
        ("another purpose than the call's", {"consent": b64(h.sign(statement(
            purpose="account_opening")))}, 422, "consent.purpose_mismatch"),
        ("the auth key", {"consent": b64(auth_signed)}, 422, "consent.signer_refused"),
        ("a certificate we did not issue", {"consent": b64(outsider)}, 422,
         "consent.signer_refused"),
        ("signed before the certificate", {"consent": b64(too_early)}, 422,
         "consent.signer_refused"),
        ("signed in the future", {"consent": b64(future)}, 422, "consent.signer_refused"),
        ("consent and id", {"consent": b64(good), "consent_id": "cs_" + "3" * 24}, 400,
         "basic4.consent_missing"),
        ("neither", {}, 400, "basic4.consent_missing"),
        ("unknown id", {"consent_id": "cs_" + "4" * 24}, 404, "consent.not_found"),
        ("malformed id", {"consent_id": "../etc"}, 422, "request.invalid"),  # at the edge
    ]
    for name, body, status, code in cases:
        before = api.snapshot()
        r = api.http.post(BASIC4, headers=rp.headers, json={"purpose": "test", **body})
        try:
            refused(api, r, status, code, before)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc

    # The scope, malformed JSON.
    before = api.snapshot()
    refused(api, api.http.post(BASIC4, headers=no_basic4.headers,
                               json={"purpose": "test", "consent": b64(good)}), 403,
            "auth.scope_missing", before)
    before = api.snapshot()
    refused(api, api.http.post(BASIC4, headers={**rp.headers,
                                                "content-type": "application/json"},
                               content=b'{"purpose": '), 400, "request.malformed", before)

    # Replayed: the same signed consent, and a new statement reusing its nonce.
    accepted = api.http.post(BASIC4, headers=rp.headers,
                             json={"purpose": "test", "consent": b64(good)})
    assert accepted.status_code == 200, accepted.text
    reused = json.loads(good[good.index(b'{"type"'):good.index(b'"}') + 2])
    for replay in (good, h.sign({**statement(), "nonce": reused["nonce"]})):
        before = api.snapshot()
        refused(api, api.http.post(BASIC4, headers=rp.headers,
                                   json={"purpose": "test", "consent": b64(replay)}), 409,
                "consent.replayed", before)
    # Another relying party's standing consent is unknown to this one.
    before = api.snapshot()
    refused(api, api.http.post(BASIC4, headers=other.headers, json={
        "purpose": "test", "consent_id": accepted.json()["consent_id"]}), 404,
        "consent.not_found", before)


def test_a_consent_signed_by_a_revoked_or_held_certificate_is_refused(
        api: Api, keys: list[rsa.RSAPrivateKey]) -> None:
    rp = register_rp(api)
    h = person(api, keys)
    now = api.services.clock.now()
    before_revocation = h.sign(consent_statement(rp.id, now))
    api.services.clock.advance(minutes=1)
    api.services.revocation.revoke(REVOKE, h.serial(), RevocationReason.KEY_COMPROMISE)
    after_revocation = h.sign(consent_statement(rp.id, now))
    for der in (before_revocation, after_revocation):
        before = api.snapshot()
        refused(api, api.http.post(BASIC4, headers=rp.headers,
                                   json={"purpose": "test", "consent": b64(der)}), 422,
                "consent.signer_revoked", before)
    held = person(api, keys, PROTECTED)
    consent = held.sign(consent_statement(rp.id, now))
    api.services.cards.record_event(CARD_EVENT, held.certs[CertKind.CARD_SIGN].card_number,
                                    CardEvent.LOST)
    before = api.snapshot()
    refused(api, api.http.post(BASIC4, headers=rp.headers,
                               json={"purpose": "test", "consent": b64(consent)}), 422,
            "consent.signer_revoked", before)


def test_a_consent_expires(api: Api, keys: list[rsa.RSAPrivateKey]) -> None:
    rp = register_rp(api)
    h = person(api, keys)
    consent = submit_consent(api, rp, h)
    api.services.clock.advance(days=31)
    before = api.snapshot()
    refused(api, api.http.post(BASIC4, headers=rp.headers, json={
        "purpose": "test", "consent_id": consent["consent_id"]}), 422, "consent.expired",
        before)
    before = api.snapshot()
    refused(api, api.http.post(BASIC4, headers=rp.headers, json={
        "purpose": "account_opening", "consent_id": consent["consent_id"]}), 422,
        "consent.expired", before)


# --- withdrawal ---------------------------------------------------------------------------


def test_the_holder_withdraws_and_every_call_is_refused(
        api: Api, keys: list[rsa.RSAPrivateKey]) -> None:
    rp = register_rp(api)
    h = person(api, keys)
    other = person(api, keys, PROTECTED)
    consent = submit_consent(api, rp, h)
    cid = consent["consent_id"]
    # Mismatched purposes on a standing consent are refused before anything is read.
    before = api.snapshot()
    refused(api, api.http.post(BASIC4, headers=rp.headers, json={
        "purpose": "account_opening", "consent_id": cid}), 422, "consent.purpose_mismatch",
        before)

    # Another holder cannot withdraw it (and learns nothing about it).
    before = api.snapshot()
    refused(api, api.http.post(WITHDRAW, json={"signed_data": b64(other.sign(
        withdrawal_statement(cid)))}), 404, "consent.not_found", before)
    before = api.snapshot()
    refused(api, api.http.post(WITHDRAW, json={"signed_data": b64(h.sign(
        {"type": "jpki-rp-consent-withdrawal/1", "consent_id": cid}))}), 400,
        "consent.invalid", before)

    # After a move, the holder withdraws with the new signing certificate.
    api.services.clock.advance(minutes=1)
    api.remember({"address": NEW_HOME})
    h.move(NEW_HOME)
    h.issue(CertKind.CARD_SIGN)
    since = head(api)
    r = api.http.post(WITHDRAW, json={"signed_data": b64(h.sign(withdrawal_statement(cid)))})
    assert r.status_code == 200, r.text
    assert r.json() == {"consent_id": cid, "withdrawn_at": "2026-11-27T01:01:00Z"}
    (record,) = records(api, since)
    assert (record.action, record.actor) == ("consent.withdrawn", f"holder:{h.resident_id}")

    for path, body in ((BASIC4, {"purpose": "test", "consent_id": cid}),
                       (LINKAGE, {"purpose": "test", "serial": consent[
                           "current_signing_serial"], "consent_id": cid})):
        before = api.snapshot()
        refused(api, api.http.post(path, headers=rp.headers, json=body), 422,
                "consent.withdrawn", before)
    before = api.snapshot()
    refused(api, api.http.post(WITHDRAW, json={"signed_data": b64(h.sign(
        withdrawal_statement(cid)))}), 409, "consent.already_withdrawn", before)


# --- DV support measures ----------------------------------------------------------------------


def test_a_resident_under_dv_support_is_never_disclosed_and_the_refusal_says_nothing(
        api: Api, keys: list[rsa.RSAPrivateKey]) -> None:
    rp = register_rp(api)
    protected = person(api, keys, PROTECTED, dv_support=True)
    moved = person(api, keys)  # revoked with no successor: the other "nothing" case
    standing = submit_consent(api, rp, moved)
    api.services.clock.advance(minutes=1)
    h_address = "東京都清瀬市竹丘一丁目１番１号 仮住まい"
    api.remember({"address": h_address})
    moved.move(h_address)

    before = api.snapshot()
    r = api.http.post(BASIC4, headers=rp.headers, json={
        "purpose": "test", "consent": b64(protected.sign(
            consent_statement(rp.id, api.services.clock.now(), items=ITEMS_ALL)))})
    dv_body = refused(api, r, 404, "basic4.not_available", before,
                      also=frozenset({"basic4.withheld_dv"}))
    withheld = records(api, before["audit_head"][0], "basic4.withheld_dv")
    assert len(withheld) == 1 and withheld[0].subject == protected.resident_id
    assert json.loads(withheld[0].payload) == {"relying_party": rp.id, "consent": None,
                                               "purpose": "test"}
    before = api.snapshot()
    revoked_body = refused(api, api.http.post(BASIC4, headers=rp.headers, json={
        "purpose": "test", "consent_id": standing["consent_id"]}), 404,
        "basic4.not_available", before)
    # The relying party cannot tell the two apart.
    assert dv_body == revoked_body
    assert records(api, before["audit_head"][0], "basic4.withheld_dv") == []

    # Support measures decided after the consent: the standing consent stops disclosing.
    h = person(api, keys, {"name": "後藤 みどり", "birth_date": "1990-01-02",
                           "address": "東京都清瀬市梅園一丁目１番１号"})
    consent = submit_consent(api, rp, h)
    asked = api.services.dv_support.request(DV_REQUEST, h.resident_id, turn_on=True,
                                            category=DvCategory.DOMESTIC_VIOLENCE)
    api.services.dv_support.decide(DV_DECIDE, asked.id, approve=True)
    before = api.snapshot()
    later = refused(api, api.http.post(BASIC4, headers=rp.headers, json={
        "purpose": "test", "consent_id": consent["consent_id"]}), 404, "basic4.not_available",
        before, also=frozenset({"basic4.withheld_dv"}))
    assert later == revoked_body
