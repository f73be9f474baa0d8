"""Refused requests: each gets a precise RFC 9457 problem with a stable code, and changes nothing.

Every case runs against the same populated database (an adult with both card certificates, a
child, a deceased resident and an adult of another municipality); before and after each request
the audit head and the full contents of the residents, cards, certificates, audit-log and
proofings tables are compared. A station's issuance, renewal or PIN reset names an identity
proofing; cases that expect a later refusal carry a valid one (recorded before the "before"
snapshot), so they reach that refusal — and the snapshot shows the proofing left unused. Every
error body is also checked for the residents' basic 4 information (:meth:`Api.problem`), and the
log of the whole test for the same (the ``api`` fixture).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from jpki.access.authz import Operation, authorize
from jpki.model import ClientRole
from tests.api.harness import (
    ADULT,
    CHILD,
    IN_PERSON_B,
    ISSUE,
    OTHER,
    PROOFINGS,
    RENEW,
    Api,
    basic_auth,
)
from tests.phone_kit import signed

JSON = {"content-type": "application/json"}
UNREGISTERED_MUNICIPALITY = "139998"  # Tokyo, valid check digit, not in the seed
BAD_CHECK_DIGIT = "132218"  # 清瀬市 is 132217
NEW_ADDRESS = "東京都清瀬市竹丘三丁目４番５号 コーポ機密２０２"
PASSPORT_NUMBER = "TK7265431"  # a document number: never stored, never echoed
PIN_RESETS = "/v1/stations/pin-resets"
NO_PROOFING = "0" * 32


@dataclass(frozen=True)
class World:
    adult: str  # 132217, holds both card certificates
    sign: str
    auth: str
    card: str
    child: str  # 132217, 11 years old, no certificates
    dead: str  # 132217, deceased
    other: str  # 131016, no certificates
    keys: list[bytes]  # keys[0], keys[1] are the adult's; the rest are unused
    bad: dict[str, bytes]
    max_body: int
    api: Api
    other_station: dict[str, str]  # a second station (the cases' station is ``api.station``)
    rp: str = ""  # a relying party's id, where a test registers one

    def key(self, i: int) -> str:
        return self.keys[i].decode("ascii")

    def proof(self, resident: str, headers: dict[str, str] | None = None) -> str:
        """A valid, unused proofing of ``resident`` by the cases' station (or ``headers``)."""
        return self.api.proof(resident, headers)

    def used_proof(self, resident: str) -> str:
        """A proofing of ``resident`` by the cases' station, already used (by a PIN reset)."""
        proofing = self.proof(resident)
        r = self.api.http.post(PIN_RESETS, headers=self.api.station, json={
            "resident_id": resident, "pin": "auth", "proofing_id": proofing})
        assert r.status_code == 200, r.text
        return proofing


@pytest.fixture
def world(api: Api, subject_keys: list[bytes], bad_keys: dict[str, bytes]) -> World:
    adult = api.register(ADULT)
    issued = api.issue(adult, sign=subject_keys[0], auth=subject_keys[1])
    kinds = {c["kind"]: c["serial"] for c in issued["certificates"]}
    dead = api.register({**ADULT, "name": "瀬戸内 故人", "birth_date": "1940-02-03"})
    r = api.http.post(f"/v1/operators/residents/{dead}/events", headers=api.op,
                      json={"kind": "death"})
    assert r.status_code == 200, r.text
    api.remember({"address": NEW_ADDRESS})
    api.personal.add(PASSPORT_NUMBER)
    # The station wrote the auth certificate onto the card (the signing one is not confirmed).
    r = api.http.post(f"/v1/stations/certificates/{kinds['card_auth']}/delivery",
                      headers=api.station)
    assert r.status_code == 200, r.text
    return World(adult=adult, sign=kinds["card_sign"], auth=kinds["card_auth"],
                 card=issued["card_number"], child=api.register(CHILD), dead=dead,
                 other=api.register(OTHER), keys=subject_keys, bad=bad_keys,
                 max_body=api.services.settings.max_body_bytes, api=api,
                 other_station=api.caller(ClientRole.STATION, "municipality:132217",
                                           "municipality:131016").headers)


@dataclass(frozen=True)
class Case:
    id: str
    role: str  # "operator" | "station"
    request: Callable[[World], dict[str, Any]]  # method, url and httpx arguments
    status: int
    code: str


def post(url: str, **kwargs: Any) -> dict[str, Any]:
    return {"method": "POST", "url": url, **kwargs}


def get(url: str) -> dict[str, Any]:
    return {"method": "GET", "url": url}


def chunks(total: int, size: int = 4096) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked), larger than the limit."""
    yield b'{"name": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


RESIDENTS = "/v1/operators/residents"


def events(resident: str) -> str:
    return f"{RESIDENTS}/{resident}/events"


def revocation(serial: str) -> str:
    return f"/v1/operators/certificates/{serial}/revocation"


def delivery(serial: str) -> str:
    return f"/v1/stations/certificates/{serial}/delivery"


def abandonment(serial: str) -> str:
    return f"/v1/stations/certificates/{serial}/abandonment"


def issue(w: World, resident: str, path: str = ISSUE, **body: Any) -> dict[str, Any]:
    """An issuance (or renewal) request by the cases' station with a valid proofing."""
    return post(path, json={"resident_id": resident, "proofing_id": w.proof(resident), **body})


def proofing(resident: str, **body: Any) -> dict[str, Any]:
    return post(PROOFINGS, json={"resident_id": resident, **IN_PERSON_B, **body})


CASES = [
    # --- the body as bytes --------------------------------------------------------------------
    Case("malformed JSON", "operator", lambda w: post(
        RESIDENTS, content='{"name": "瀬戸内 ひかり", "sex": '.encode(), headers=JSON),
        400, "request.malformed"),
    Case("JSON that is not UTF-8", "operator", lambda w: post(
        RESIDENTS, content=b'{"name": "\xff\xfe"}', headers=JSON), 400, "request.malformed"),
    Case("JSON sent as text/plain", "operator", lambda w: post(
        RESIDENTS, content=json.dumps(ADULT).encode(), headers={"content-type": "text/plain"}),
        415, "request.unsupported_media_type"),
    Case("JSON array instead of an object", "operator", lambda w: post(RESIDENTS, json=[ADULT]),
         422, "request.invalid"),
    Case("body over the limit, Content-Length", "operator", lambda w: post(
        RESIDENTS, content=b'{"name": "' + b"x" * w.max_body + b'"}', headers=JSON),
        413, "request.too_large"),
    Case("body over the limit, chunked", "operator", lambda w: post(
        RESIDENTS, content=chunks(w.max_body), headers=JSON), 413, "request.too_large"),
    Case("body over the limit on a station route", "station", lambda w: post(
        ISSUE, content=chunks(w.max_body), headers=JSON), 413, "request.too_large"),
    # --- registration -------------------------------------------------------------------------
    Case("name over the schema limit", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "name": "瀬戸内ひかり" * 50}), 422, "request.invalid"),
    Case("name over the certificate limit", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "name": "瀬戸内ひかり" * 25}), 400, "basic4.invalid"),
    Case("name with a control character", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "name": "瀬戸内\u0007ひかり"}), 400, "basic4.invalid"),
    Case("empty address", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "address": ""}), 422, "request.invalid"),
    Case("address of spaces only", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "address": "\u3000 \u3000"}), 400, "basic4.invalid"),
    Case("unknown field", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "nickname": "ひーちゃん"}), 422, "request.invalid"),
    Case("missing field", "operator", lambda w: post(
        RESIDENTS, json={k: v for k, v in ADULT.items() if k != "birth_date"}),
        422, "request.invalid"),
    Case("sex out of range", "operator", lambda w: post(RESIDENTS, json={**ADULT, "sex": 4}),
         422, "request.invalid"),
    Case("impossible birth date", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "birth_date": "1990-02-30"}), 422, "request.invalid"),
    Case("birth date in the future", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "birth_date": "2030-01-01"}), 400, "date.invalid"),
    Case("municipality code of 5 digits", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "municipality_code": "13221"}), 422, "request.invalid"),
    Case("unknown municipality", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "municipality_code": UNREGISTERED_MUNICIPALITY}),
        404, "municipality.not_found"),
    Case("municipality check digit", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "municipality_code": BAD_CHECK_DIGIT}),
        400, "municipality.invalid"),
    Case("prefecture 99", "operator", lambda w: post(
        RESIDENTS, json={**ADULT, "municipality_code": "990007"}), 400, "municipality.invalid"),
    # --- types: JSON values are taken as they are, never coerced --------------------------------
    *[Case(f"registration with {field} {value!r}", "operator", lambda w, f=field, v=value: post(
        RESIDENTS, json={**ADULT, f: v}), 422, "request.invalid")
      for field, value in (
          ("birth_date", 0),  # once stored as 1970-01-01
          ("birth_date", 631_238_400),
          ("birth_date", "19900102"),
          ("birth_date", "1990-01-02T00:00:00"),
          ("sex", True),  # once stored as 1
          ("sex", 1.0),
          ("sex", "1"),
          ("dv_request", True),  # once dv_support, and "yes" stored as true
          ("dv_request", "ended"),  # lifting, at registration
          ("dv_request", "DV"),
          ("name", 12345),
          ("municipality_code", 132217))],
    *[Case(f"event with {field} {value!r}", "operator", lambda w, f=field, v=value: post(
        events(w.adult), json={"kind": "sex", f: v}), 422, "request.invalid")
      for field, value in (("sex", True), ("sex", 2.0), ("birth_date", 0), ("date", 0),
                           ("kind", 1))],
    Case("card expiry as a number", "operator", lambda w: post(
        "/v1/operators/cards", json={"resident_id": w.other, "expires_on": 20300101}),
        422, "request.invalid"),
    Case("proofing flag as text", "station", lambda w: proofing(w.other, hardship_proof="true"),
         422, "request.invalid"),
    Case("proofing document flag as a number", "station", lambda w: proofing(
        w.other, applicant_documents=[{"type": "passport", "has_photo": 1},
                                      {"type": "drivers_license"}]), 422, "request.invalid"),
    # --- identifiers (every route and value: test_no_identifier_reaches_the_database_unchecked)
    Case("resident id with a NUL", "operator", lambda w: get(f"{RESIDENTS}/%00"),
         422, "request.invalid"),
    Case("resident id in capitals", "operator", lambda w: get(f"{RESIDENTS}/{w.adult.upper()}"),
         422, "request.invalid"),
    Case("serial with a NUL", "operator", lambda w: get("/v1/certificates/ab%00cd"),
         400, "serial.invalid"),
    Case("serial with a line feed", "operator", lambda w: get(f"/v1/certificates/{w.sign}%0A"),
         400, "serial.invalid"),
    Case("serial of 129 characters", "operator", lambda w: get(
        "/v1/certificates/" + "0" * 128 + "1"), 400, "serial.invalid"),
    # --- resident events ----------------------------------------------------------------------
    Case("unknown resident", "operator", lambda w: get(f"{RESIDENTS}/{'0' * 32}"),
         404, "resident.not_found"),
    Case("event for an unknown resident", "operator", lambda w: post(
        events("0" * 32), json={"kind": "address", "address": NEW_ADDRESS}),
        404, "resident.not_found"),
    Case("event for a deceased resident", "operator", lambda w: post(
        events(w.dead), json={"kind": "address", "address": NEW_ADDRESS}),
        422, "resident.inactive"),
    Case("death of a deceased resident", "operator", lambda w: post(
        events(w.dead), json={"kind": "death"}), 422, "resident.inactive"),
    Case("event of an unknown kind", "operator", lambda w: post(
        events(w.adult), json={"kind": "marriage"}), 422, "request.invalid"),
    Case("address event without an address", "operator", lambda w: post(
        events(w.adult), json={"kind": "address"}), 400, "request.invalid"),
    Case("emigration without a date", "operator", lambda w: post(
        events(w.adult), json={"kind": "emigration", "address": "ROMA ITALIA"}),
        400, "request.invalid"),
    Case("death in the future", "operator", lambda w: post(
        events(w.adult), json={"kind": "death", "date": "2027-01-01"}), 400, "date.invalid"),
    Case("move to an unknown municipality", "operator", lambda w: post(
        events(w.adult), json={"kind": "address", "address": NEW_ADDRESS,
                               "municipality_code": UNREGISTERED_MUNICIPALITY}),
        404, "municipality.not_found"),
    Case("move to a bad check digit", "operator", lambda w: post(
        events(w.adult), json={"kind": "address", "address": NEW_ADDRESS,
                               "municipality_code": BAD_CHECK_DIGIT}),
        400, "municipality.invalid"),
    # --- certificates: lookup and revocation ---------------------------------------------------
    Case("unknown serial", "operator", lambda w: get("/v1/certificates/7fff0000ffff0000ab"),
         404, "certificate.not_found"),
    Case("revoke an unknown serial", "operator", lambda w: post(
        revocation("7fff0000ffff0000ab"), json={"reason": "keyCompromise"}),
        404, "certificate.not_found"),
    Case("serial that is not hex", "station", lambda w: get("/v1/certificates/serial-xyz"),
         400, "serial.invalid"),
    Case("serial zero", "operator", lambda w: get("/v1/certificates/00"), 400, "serial.invalid"),
    Case("serial of 41 digits", "operator", lambda w: get("/v1/certificates/" + "1" * 41),
         400, "serial.invalid"),
    Case("revoke a malformed serial", "operator", lambda w: post(
        revocation("not-a-serial"), json={"reason": "keyCompromise"}), 400, "serial.invalid"),
    Case("unknown revocation reason", "operator", lambda w: post(
        revocation(w.sign), json={"reason": "lostIt"}), 400, "revocation.reason_invalid"),
    Case("removeFromCRL as a reason", "operator", lambda w: post(
        revocation(w.sign), json={"reason": "removeFromCRL"}), 400, "revocation.reason_invalid"),
    Case("removeFromCRL by number", "operator", lambda w: post(
        revocation(w.sign), json={"reason": "8"}), 400, "revocation.reason_invalid"),
    Case("reason 7 (unused in RFC 5280)", "operator", lambda w: post(
        revocation(w.sign), json={"reason": "7"}), 400, "revocation.reason_invalid"),
    Case("empty reason", "operator", lambda w: post(revocation(w.sign), json={"reason": ""}),
         422, "request.invalid"),
    # --- issuance and renewal ------------------------------------------------------------------
    Case("EC key", "station", lambda w: issue(
        w, w.other, auth_public_key=w.bad["ec"].decode()), 400, "public_key.algorithm"),
    Case("RSA-1024 key", "station", lambda w: issue(
        w, w.other, auth_public_key=w.bad["rsa1024"].decode()), 400, "public_key.weak"),
    Case("garbage PEM", "station", lambda w: issue(
        w, w.other, auth_public_key=w.bad["garbage"].decode()), 400, "public_key.invalid"),
    Case("not PEM at all", "station", lambda w: issue(w, w.other, sign_public_key="鍵"),
         400, "public_key.invalid"),
    Case("one good key and one bad", "station", lambda w: issue(
        w, w.other, auth_public_key=w.key(2), sign_public_key=w.bad["rsa1024"].decode()),
        400, "public_key.weak"),
    Case("no key", "station", lambda w: issue(w, w.other), 400, "request.invalid"),
    Case("empty key", "station", lambda w: issue(
        w, w.other, sign_public_key="", auth_public_key=w.key(2)), 422, "request.invalid"),
    Case("same key for signing and auth", "station", lambda w: issue(
        w, w.other, sign_public_key=w.key(2), auth_public_key=w.key(2)),
        409, "public_key.duplicate"),
    Case("a key already certified", "station", lambda w: issue(
        w, w.other, sign_public_key=w.key(0), auth_public_key=w.key(2)),
        409, "public_key.duplicate"),
    Case("issue for an unknown resident", "station", lambda w: post(
        ISSUE, json={"resident_id": "0" * 32, "auth_public_key": w.key(2),
                     "proofing_id": NO_PROOFING}), 404, "resident.not_found"),
    Case("issue for a deceased resident", "station", lambda w: post(
        ISSUE, json={"resident_id": w.dead, "auth_public_key": w.key(2),
                     "proofing_id": NO_PROOFING}), 422, "resident.inactive"),
    Case("signing certificate under 15", "station", lambda w: issue(
        w, w.child, sign_public_key=w.key(2), auth_public_key=w.key(3)), 422, "policy.under_15"),
    Case("a valid certificate of the kind exists", "station", lambda w: issue(
        w, w.adult, sign_public_key=w.key(2)), 409, "conflict"),
    Case("card number of another resident's card", "station", lambda w: issue(
        w, w.other, auth_public_key=w.key(2), card={"number": w.card}), 409, "card.conflict"),
    Case("card number with symbols", "station", lambda w: issue(
        w, w.other, auth_public_key=w.key(2), card={"number": "AB-CD-EF-GH"}),
        422, "request.invalid"),
    Case("renewal outside the window", "station", lambda w: issue(
        w, w.adult, RENEW, sign_public_key=w.key(2), auth_public_key=w.key(3)),
        422, "policy.renewal_window"),
    Case("renewal without a certificate", "station", lambda w: issue(
        w, w.other, RENEW, auth_public_key=w.key(2)), 422, "certificate.not_renewable"),
    # --- identity proofing required by issuance and renewal (one answer for every failure) ----
    Case("issue without a proofing", "station", lambda w: post(
        ISSUE, json={"resident_id": w.other, "auth_public_key": w.key(2)}),
        422, "proofing.required"),
    Case("renewal without a proofing", "station", lambda w: post(
        RENEW, json={"resident_id": w.adult, "auth_public_key": w.key(2)}),
        422, "proofing.required"),
    Case("issue with an unknown proofing", "station", lambda w: post(
        ISSUE, json={"resident_id": w.other, "auth_public_key": w.key(2),
                     "proofing_id": NO_PROOFING}), 422, "proofing.required"),
    Case("issue with a proofing already used", "station", lambda w: post(
        ISSUE, json={"resident_id": w.other, "auth_public_key": w.key(2),
                     "proofing_id": w.used_proof(w.other)}), 422, "proofing.required"),
    Case("issue with another resident's proofing", "station", lambda w: post(
        ISSUE, json={"resident_id": w.other, "auth_public_key": w.key(2),
                     "proofing_id": w.proof(w.child)}), 422, "proofing.required"),
    Case("issue with another station's proofing", "station", lambda w: post(
        ISSUE, json={"resident_id": w.child, "auth_public_key": w.key(2),
                     "proofing_id": w.proof(w.child, w.other_station)}),
        422, "proofing.required"),
    Case("renewal with another station's proofing", "station", lambda w: post(
        RENEW, json={"resident_id": w.adult, "auth_public_key": w.key(2),
                     "proofing_id": w.proof(w.adult, w.other_station)}),
        422, "proofing.required"),
    Case("empty proofing id", "station", lambda w: post(
        ISSUE, json={"resident_id": w.other, "auth_public_key": w.key(2), "proofing_id": ""}),
        422, "request.invalid"),
    Case("proofing id over 64 characters", "station", lambda w: post(
        ISSUE, json={"resident_id": w.other, "auth_public_key": w.key(2),
                     "proofing_id": "a" * 65}), 422, "request.invalid"),
    # --- recording a proofing -------------------------------------------------------------------
    Case("proofing one 甲 document short", "station", lambda w: proofing(
        w.other, applicant_documents=[{"type": "passport"}]), 422, "proofing.insufficient"),
    Case("proofing with no documents", "station", lambda w: proofing(
        w.other, applicant_documents=[]), 422, "proofing.insufficient"),
    Case("proofing with an old 運転経歴証明書", "station", lambda w: proofing(
        w.other, applicant_documents=[{"type": "passport"},
                                      {"type": "driving_record_certificate",
                                       "issued_on": "2011-05-06"}]),
        422, "proofing.insufficient"),
    Case("proxy pick-up without a letter of delegation", "station", lambda w: proofing(
        w.child, presence="proxy", applicant_documents=[
            {"type": "guardian_photo_certificate"}, {"type": "health_insurance_card"},
            {"type": "child_medical_certificate"}],
        proxy_documents=[{"type": "drivers_license"}, {"type": "health_insurance_card"}],
        hardship_proof=True), 422, "proofing.insufficient"),
    Case("proxy documents in an in-person proofing", "station", lambda w: proofing(
        w.other, proxy_documents=[{"type": "my_number_card"}]), 400, "request.invalid"),
    Case("proofing of an unknown presence", "station", lambda w: proofing(
        w.other, presence="video_call"), 422, "request.invalid"),
    Case("proofing with an unknown document type", "station", lambda w: proofing(
        w.other, applicant_documents=[{"type": "library_card"}, {"type": "passport"}]),
        422, "request.invalid"),
    Case("proofing with an unknown measure", "station", lambda w: proofing(
        w.other, measures=["fingerprint"]), 422, "request.invalid"),
    Case("proofing with a document number", "station", lambda w: proofing(
        w.other, applicant_documents=[{"type": "passport", "number": PASSPORT_NUMBER},
                                      {"type": "drivers_license"}]), 422, "request.invalid"),
    Case("proofing with 17 documents", "station", lambda w: proofing(
        w.other, applicant_documents=[{"type": "bank_passbook"}] * 15
        + [{"type": "passport"}, {"type": "drivers_license"}]), 422, "request.invalid"),
    Case("proofing without a presence", "station", lambda w: post(PROOFINGS, json={
        "resident_id": w.other, "applicant_documents": IN_PERSON_B["applicant_documents"]}),
        422, "request.invalid"),
    Case("proofing of an unknown resident", "station", lambda w: proofing("0" * 32),
         404, "resident.not_found"),
    Case("proofing of a deceased resident", "station", lambda w: proofing(w.dead),
         422, "resident.inactive"),
    # --- PIN resets -----------------------------------------------------------------------------
    Case("PIN reset of an unknown PIN", "station", lambda w: post(PIN_RESETS, json={
        "resident_id": w.other, "pin": "both", "proofing_id": w.proof(w.other)}),
        422, "request.invalid"),
    Case("PIN reset without a proofing", "station", lambda w: post(PIN_RESETS, json={
        "resident_id": w.other, "pin": "sign"}), 422, "request.invalid"),
    Case("PIN reset with a proofing already used", "station", lambda w: post(PIN_RESETS, json={
        "resident_id": w.other, "pin": "sign", "proofing_id": w.used_proof(w.other)}),
        422, "proofing.required"),
    Case("PIN reset with another station's proofing", "station", lambda w: post(
        PIN_RESETS, json={"resident_id": w.other, "pin": "sign",
                          "proofing_id": w.proof(w.other, w.other_station)}),
        422, "proofing.required"),
    Case("PIN reset with another resident's proofing", "station", lambda w: post(
        PIN_RESETS, json={"resident_id": w.other, "pin": "sign",
                          "proofing_id": w.proof(w.adult)}), 422, "proofing.required"),
    Case("PIN reset of an unknown resident", "station", lambda w: post(PIN_RESETS, json={
        "resident_id": "0" * 32, "pin": "sign", "proofing_id": NO_PROOFING}),
        404, "resident.not_found"),
    # --- delivery onto the card -----------------------------------------------------------------
    Case("delivery of an unknown serial", "station", lambda w: post(delivery("7fff0000ffff")),
         404, "certificate.not_found"),
    Case("delivery of a malformed serial", "station", lambda w: post(delivery("xyz")),
         400, "serial.invalid"),
    Case("delivery confirmed by another station", "station", lambda w: post(
        delivery(w.sign), headers=w.other_station), 403, "auth.forbidden"),
    Case("abandonment by another station", "station", lambda w: post(
        abandonment(w.sign), headers=w.other_station), 403, "auth.forbidden"),
    Case("abandonment of a delivered certificate", "station", lambda w: post(
        abandonment(w.auth)), 409, "conflict"),
    Case("abandonment of an unknown serial", "station", lambda w: post(
        abandonment("7fff0000ffff")), 404, "certificate.not_found"),
    # --- cards --------------------------------------------------------------------------------
    Case("unknown card", "operator", lambda w: post(
        "/v1/operators/cards/NOSUCHCARD0000/events", json={"kind": "lost"}),
        404, "card.not_found"),
    Case("malformed card number", "operator", lambda w: post(
        "/v1/operators/cards/ab/events", json={"kind": "lost"}), 422, "request.invalid"),
    Case("card found while active", "operator", lambda w: post(
        f"/v1/operators/cards/{w.card}/events", json={"kind": "found"}), 422, "card.inactive"),
    Case("card event of an unknown kind", "operator", lambda w: post(
        f"/v1/operators/cards/{w.card}/events", json={"kind": "stolen"}),
        422, "request.invalid"),
    Case("register the active card again", "operator", lambda w: post(
        "/v1/operators/cards", json={"resident_id": w.adult, "number": w.card}),
        409, "card.conflict"),
    Case("replace the card with one already expired", "operator", lambda w: post(
        "/v1/operators/cards", json={"resident_id": w.adult, "number": "EXPIRED0001",
                                     "expires_on": "2026-01-01"}), 422, "card.expired"),
    Case("issue on a card already expired", "station", lambda w: issue(
        w, w.other, auth_public_key=w.key(2), card={"expires_on": "2026-11-26"}),
        422, "card.expired"),
    Case("card expiry unlike the active card's", "station", lambda w: issue(
        w, w.adult, RENEW, auth_public_key=w.key(2), card={"expires_on": "2029-01-01"}),
        409, "card.conflict"),
    Case("register a card for a deceased resident", "operator", lambda w: post(
        "/v1/operators/cards", json={"resident_id": w.dead}), 422, "resident.inactive"),
    # --- routing ------------------------------------------------------------------------------
    Case("unknown route", "operator", lambda w: get("/v1/operators/nothing-here"),
         404, "not_found"),
    Case("wrong method", "operator", lambda w: {"method": "DELETE", "url": events(w.adult)},
         405, "request.method_not_allowed"),
]


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


def test_refused_requests_answer_precisely_and_change_nothing(api: Api, world: World) -> None:
    headers = {"operator": api.op, "station": api.station}
    failures = []
    for case in CASES:
        request = case.request(world)
        request["headers"] = {**headers[case.role], **request.get("headers", {})}
        before = api.snapshot()
        response = api.http.request(**request)
        try:
            api.problem(response, case.status, case.code)
            api.unchanged(before)
        except AssertionError as exc:
            failures.append(f"{case.id}: {exc}")
    assert not failures, f"{len(failures)} of {len(CASES)} cases failed:\n" + "\n".join(failures)


def test_schema_errors_name_the_field_but_never_echo_the_value(api: Api, world: World) -> None:
    secret_name = "瀬戸内秘密ひかり" * 40  # 320 characters
    api.remember({"name": secret_name})
    r = api.http.post(RESIDENTS, headers=api.op, json={**ADULT, "name": secret_name, "sex": 9})

    body = api.problem(r, 422, "request.invalid")
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "name"), ("body", "sex")}
    assert {e["type"] for e in body["errors"]} == {"string_too_long", "literal_error"}
    assert "秘密" not in r.text
    assert "input" not in json.dumps(body["errors"])


def test_oversized_body_is_refused_before_authentication(api: Api, world: World) -> None:
    before = api.snapshot()
    for headers in ({}, api.op):
        r = api.http.post(RESIDENTS, content=chunks(world.max_body),
                          headers={**JSON, **headers})
        body = api.problem(r, 413, "request.too_large")
        assert str(world.max_body) in body["detail"]
    api.unchanged(before)


def test_a_body_just_under_the_limit_is_read(api: Api, world: World) -> None:
    """The limit refuses what is over it, not what is near it: padding with spaces keeps the
    JSON valid, so the answer is the schema's."""
    payload = json.dumps({**ADULT, "name": 1}).encode()
    padded = payload[:-1] + b" " * (world.max_body - len(payload)) + b"}"
    assert len(padded) == world.max_body
    for content in (padded, iter([padded[:1000], padded[1000:]])):
        r = api.http.post(RESIDENTS, content=content, headers={**JSON, **api.op})
        api.problem(r, 422, "request.invalid")


def test_under_15_gets_the_auth_certificate_alone(api: Api, world: World) -> None:
    proofing = world.proof(world.child)
    refused = api.http.post(ISSUE, headers=api.station, json={
        "resident_id": world.child, "sign_public_key": world.key(2),
        "auth_public_key": world.key(3), "proofing_id": proofing})
    api.problem(refused, 422, "policy.under_15")

    # The refusal left the proofing unused: the corrected request uses the same one.
    r = api.http.post(ISSUE, headers=api.station, json={
        "resident_id": world.child, "auth_public_key": world.key(3), "proofing_id": proofing})
    assert r.status_code == 201, r.text
    assert [c["kind"] for c in r.json()["certificates"]] == ["card_auth"]
    # The refused request left no card behind: this one made the child's first card.
    assert r.json()["card_number"] != world.card


def test_a_refused_issuance_leaves_its_proofing_for_the_corrected_request(
        api: Api, world: World) -> None:
    """The proofing is consumed in the transaction of the issuance intent: a refusal before the
    intent rolls it back. Once an issuance succeeds, it is used up."""
    proofing = world.proof(world.other)
    for body, status, code in (
            ({"sign_public_key": world.key(0), "auth_public_key": world.key(2)}, 409,
             "public_key.duplicate"),  # refused after the proofing check, inside the transaction
            ({"auth_public_key": world.key(2), "card": {"number": world.card}}, 409,
             "card.conflict"),
            ({"auth_public_key": world.bad["rsa1024"].decode()}, 400, "public_key.weak")):
        before = api.snapshot()
        r = api.http.post(ISSUE, headers=api.station,
                          json={"resident_id": world.other, "proofing_id": proofing, **body})
        api.problem(r, status, code)
        api.unchanged(before)

    ok = api.http.post(ISSUE, headers=api.station, json={
        "resident_id": world.other, "auth_public_key": world.key(2), "proofing_id": proofing})
    assert ok.status_code == 201, ok.text
    before = api.snapshot()
    again = api.http.post(ISSUE, headers=api.station, json={
        "resident_id": world.other, "sign_public_key": world.key(3), "proofing_id": proofing})
    api.problem(again, 422, "proofing.required")
    api.unchanged(before)


def test_a_proofing_expires_after_two_hours(api: Api, world: World, clock: Any) -> None:
    for_pin, stale = world.proof(world.other), world.proof(world.child)
    clock.advance(hours=2)  # the instant of expiry: no longer valid

    before = api.snapshot()
    r = api.http.post(ISSUE, headers=api.station, json={
        "resident_id": world.child, "auth_public_key": world.key(3), "proofing_id": stale})
    api.problem(r, 422, "proofing.required")
    r = api.http.post(PIN_RESETS, headers=api.station, json={
        "resident_id": world.other, "pin": "auth", "proofing_id": for_pin})
    api.problem(r, 422, "proofing.required")
    api.unchanged(before)

    clock.advance(seconds=-1)  # one second earlier it still was
    r = api.http.post(ISSUE, headers=api.station, json={
        "resident_id": world.child, "auth_public_key": world.key(3), "proofing_id": stale})
    assert r.status_code == 201, r.text


def test_a_station_cannot_tell_whose_proofing_an_id_is(api: Api, world: World) -> None:
    """Unknown, another resident's, another station's: one answer, word for word."""
    ids = {"unknown": NO_PROOFING, "another resident's": world.proof(world.child),
           "another station's": world.proof(world.other, world.other_station)}
    before = api.snapshot()
    answers = {}
    for name, proofing in ids.items():
        r = api.http.post(ISSUE, headers=api.station, json={
            "resident_id": world.other, "auth_public_key": world.key(2),
            "proofing_id": proofing})
        answers[name] = api.problem(r, 422, "proofing.required")
    api.unchanged(before)
    assert answers["unknown"] == answers["another resident's"] == answers["another station's"]
    assert all(proofing not in json.dumps(answers) for proofing in ids.values())


def test_error_bodies_carry_identifiers_only(api: Api, world: World) -> None:
    """The context of a problem names what was refused (a serial, a field, a rule), nothing
    the request said about a person."""
    r = api.http.post(RESIDENTS, headers=api.op,
                      json={**ADULT, "name": "瀬戸内\u0007ひかり"})
    body = api.problem(r, 400, "basic4.invalid")
    assert body["context"] == {"field": "name", "position": 4, "rule": "control_character"}

    r = api.http.post(ISSUE, headers=api.station,
                      json={"resident_id": world.adult, "sign_public_key": world.key(2),
                            "proofing_id": world.proof(world.adult)})
    body = api.problem(r, 409, "conflict")
    assert body["context"] == {"serial": world.sign, "kind": "card_sign"}

    # A proofing refused: the counts and the rule, never the documents' dates.
    r = api.http.post(PROOFINGS, headers=api.station, json={
        "resident_id": world.other, "presence": "in_person",
        "applicant_documents": [{"type": "passport"}, {"type": "receipt",
                                                       "issued_on": "2026-01-13"}]})
    body = api.problem(r, 422, "proofing.insufficient")
    assert "甲 1, 乙 0 of which 0 with a photo, 照会回答書 0, receipts 0" in body["detail"]
    assert "receipt: must be dated within the last 3 months" in body["detail"]
    assert "2026-01-13" not in r.text


def test_revocation_reason_is_not_echoed(api: Api, world: World) -> None:
    r = api.http.post(revocation(world.sign), headers=api.op,
                      json={"reason": ADULT["name"]})
    api.problem(r, 400, "revocation.reason_invalid")


def test_the_snapshot_notices_a_change(api: Api, world: World) -> None:
    """The "changes nothing" check above can fail: an accepted event is seen."""
    before = api.snapshot()
    r = api.http.post(events(world.adult), headers=api.op,
                      json={"kind": "address", "address": NEW_ADDRESS})
    assert r.status_code == 200, r.text
    with pytest.raises(AssertionError, match=r"audit_head.*residents.*certificates.*audit_log"):
        api.unchanged(before)


def test_relying_party_bodies_take_no_coercion(api: Api, world: World) -> None:
    """The relying-party bodies are strict too: a number is not a text, a text is not a list,
    "60" and true are not a number of seconds."""
    rp = api.services.relying_parties.register(
        authorize(api.operator, Operation.RP_REGISTER), name="RP strict",
        kind="platform_operator", purposes=["test"],
        scopes=["status", "linkage"])
    good = {"name": "株式会社検証", "kind": "platform_operator", "purposes": ["test"],
            "scopes": ["status"]}
    rp_headers = basic_auth(rp.client_id, rp.client_secret)
    refused = [
        ("/v1/operators/relying-parties", api.op, {**good, "name": 1}),
        ("/v1/operators/relying-parties", api.op, {**good, "purposes": "test"}),
        ("/v1/operators/relying-parties", api.op, {**good, "scopes": "status"}),
        (f"/v1/operators/relying-parties/{rp.relying_party.id}/secret-rotations", api.op,
         {"overlap_seconds": "60"}),
        (f"/v1/operators/relying-parties/{rp.relying_party.id}/secret-rotations", api.op,
         {"overlap_seconds": True}),
        (f"/v1/operators/relying-parties/{rp.relying_party.id}/secret-rotations", api.op,
         {"overlap_seconds": 60.0}),
        ("/v1/status", rp_headers, {"purpose": "test", "serials": [int(world.sign, 16)]}),
        ("/v1/linkage", rp_headers, {"purpose": "test", "serial": int(world.sign, 16)}),
    ]
    before = api.snapshot()
    for url, headers, body in refused:
        r = api.http.post(url, headers=headers, json=body)
        api.problem(r, 422, "request.invalid")
    # Refusals on the relying-party routes are audited; nothing else changed.
    api.unchanged(before, audited=frozenset({"rp.refused"}))


# --- identifiers: NUL, control characters, overlong and undecodable values, everywhere ------------
#
# Every identifier a route takes — in its path or its body — with values no identifier can hold.
# PostgreSQL cannot store a NUL in a text column at all: such a value once reached the database
# and came back as a 500 with a traceback in the log. Each must be refused at the edge with a
# 4xx problem, change nothing, and leave no traceback and none of the values in the log.

BAD_TEXT = {
    "NUL": "\x00",
    "NUL inside an id": "0123456789abcdef\x000123456789abcde",
    "SOH": "\x01",
    "unit separator": "\x1f",
    "DEL": "\x7f",
    "line feed after an id": "0123456789abcdef0123456789abcdef\n",
    "overlong": "a" * 5000,
}
NOT_UTF8_IN_PATH = "%FF%FE"  # percent-encoded bytes that are not UTF-8
LONE_SURROGATE_JSON = '"\\ud800"'  # valid JSON, but text no database can store


@dataclass(frozen=True)
class Slot:
    id: str
    role: str  # operator | station | callcenter | rp | anonymous
    where: str  # path | body
    # (world, value) → request; a path value comes percent-encoded, a body value as a JSON text
    # that ``body`` puts where the identifier goes.
    request: Callable[[World, str], dict[str, Any]]
    accepts: frozenset[str] = frozenset()  # values this field takes (after trimming them)


def body(method: str, url: str, template: dict[str, Any], value: str) -> dict[str, Any]:
    """``template`` as JSON with the string "@" replaced by ``value`` (JSON text)."""
    text = json.dumps(template).replace('"@"', value)
    return {"method": method, "url": url, "content": text.encode(), "headers": JSON}


def in_body(url: str, template: dict[str, Any]) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, v: body("POST", url, template, v)


SLOTS = [
    # --- in the path ---------------------------------------------------------------------------
    Slot("resident id (GET)", "operator", "path", lambda w, v: get(f"{RESIDENTS}/{v}")),
    Slot("resident id (event)", "operator", "path", lambda w, v: post(
        events(v), json={"kind": "address", "address": NEW_ADDRESS})),
    Slot("card number", "operator", "path", lambda w, v: post(
        f"/v1/operators/cards/{v}/events", json={"kind": "lost"})),
    Slot("serial (GET)", "operator", "path", lambda w, v: get(f"/v1/certificates/{v}")),
    Slot("serial (revocation)", "operator", "path", lambda w, v: post(
        revocation(v), json={"reason": "keyCompromise"})),
    Slot("serial (delivery)", "station", "path", lambda w, v: post(delivery(v))),
    Slot("serial (abandonment)", "station", "path", lambda w, v: post(abandonment(v))),
    Slot("serial (call-centre hold)", "callcenter", "path", lambda w, v: post(
        f"/v1/callcenter/certificates/{v}/hold")),
    Slot("relying party id (rotation)", "operator", "path", lambda w, v: post(
        f"/v1/operators/relying-parties/{v}/secret-rotations", json={})),
    Slot("relying party id (status)", "operator", "path", lambda w, v: post(
        f"/v1/operators/relying-parties/{v}/status", json={"status": "suspended"})),
    Slot("CA certificate", "anonymous", "path", lambda w, v: get(f"/ca/{v}/g1.cer")),
    Slot("CRL ca", "anonymous", "path", lambda w, v: get(f"/crl/{v}/g01/132217.crl")),
    Slot("CRL generation", "anonymous", "path", lambda w, v: get(f"/crl/sign/g{v}/132217.crl")),
    Slot("CRL name", "anonymous", "path", lambda w, v: get(f"/crl/sign/g01/{v}")),
    # --- in the body ---------------------------------------------------------------------------
    Slot("municipality code (registration)", "operator", "body", in_body(
        RESIDENTS, {**ADULT, "municipality_code": "@"})),
    Slot("municipality code (move)", "operator", "body", lambda w, v: body(
        "POST", events(w.adult), {"kind": "address", "address": NEW_ADDRESS,
                                  "municipality_code": "@"}, v)),
    Slot("resident id (card)", "operator", "body", in_body(
        "/v1/operators/cards", {"resident_id": "@"})),
    Slot("card number (card)", "operator", "body", lambda w, v: body(
        "POST", "/v1/operators/cards", {"resident_id": w.other, "number": "@"}, v)),
    Slot("resident id (issuance)", "station", "body", lambda w, v: body(
        "POST", ISSUE, {"resident_id": "@", "auth_public_key": w.key(2),
                        "proofing_id": NO_PROOFING}, v)),
    Slot("proofing id (issuance)", "station", "body", lambda w, v: body(
        "POST", ISSUE, {"resident_id": w.other, "auth_public_key": w.key(2),
                        "proofing_id": "@"}, v)),
    Slot("card number (issuance)", "station", "body", lambda w, v: body(
        "POST", ISSUE, {"resident_id": w.other, "auth_public_key": w.key(2),
                        "proofing_id": NO_PROOFING, "card": {"number": "@"}}, v)),
    Slot("resident id (renewal)", "station", "body", lambda w, v: body(
        "POST", RENEW, {"resident_id": "@", "auth_public_key": w.key(2),
                        "proofing_id": NO_PROOFING}, v)),
    Slot("resident id (proofing)", "station", "body", in_body(
        PROOFINGS, {"resident_id": "@", **IN_PERSON_B})),
    Slot("resident id (PIN reset)", "station", "body", in_body(
        PIN_RESETS, {"resident_id": "@", "pin": "auth", "proofing_id": NO_PROOFING})),
    Slot("proofing id (PIN reset)", "station", "body", lambda w, v: body(
        "POST", PIN_RESETS, {"resident_id": w.other, "pin": "auth", "proofing_id": "@"}, v)),
    Slot("resident id (call-centre hold)", "callcenter", "body", in_body(
        "/v1/callcenter/holds", {"resident_id": "@"})),
    Slot("parent relying party", "operator", "body", in_body(
        "/v1/operators/relying-parties", {"name": "子会社", "kind": "service_provider",
                                          "parent_id": "@", "purposes": ["test"],
                                          "scopes": ["status"]})),
    Slot("purpose (registration)", "operator", "body", in_body(
        "/v1/operators/relying-parties", {"name": "検証", "kind": "platform_operator",
                                          "purposes": ["@"], "scopes": ["status"]})),
    Slot("client id (rotation)", "operator", "body", lambda w, v: body(
        "POST", f"/v1/operators/relying-parties/{w.rp}/secret-rotations",
        {"client_id": "@"}, v)),
    Slot("serial (status)", "rp", "body", in_body(
        "/v1/status", {"purpose": "test", "serials": ["@"]})),
    Slot("purpose (status)", "rp", "body", lambda w, v: body(
        "POST", "/v1/status", {"purpose": "@", "serials": [w.sign]}, v)),
    Slot("serial (linkage)", "rp", "body", in_body(
        "/v1/linkage", {"purpose": "test", "serial": "@", "consent_id": "cs_" + "0" * 24})),
    Slot("consent id (linkage)", "rp", "body", lambda w, v: body(
        "POST", "/v1/linkage", {"purpose": "test", "serial": w.sign, "consent_id": "@"}, v)),
    Slot("consent id (basic 4)", "rp", "body", in_body(
        "/v1/basic4", {"purpose": "test", "consent_id": "@"})),
    # --- free text next to the identifiers ----------------------------------------------------
    Slot("name (registration)", "operator", "body", in_body(RESIDENTS, {**ADULT, "name": "@"})),
    Slot("address (registration)", "operator", "body", in_body(
        RESIDENTS, {**ADULT, "address": "@"})),
    Slot("name (event)", "operator", "body", lambda w, v: body(
        "POST", events(w.adult), {"kind": "name", "name": "@"}, v)),
    Slot("address (event)", "operator", "body", lambda w, v: body(
        "POST", events(w.adult), {"kind": "address", "address": "@"}, v)),
    Slot("revocation reason", "operator", "body", lambda w, v: body(
        "POST", revocation(w.sign), {"reason": "@"}, v)),
    Slot("relying party name", "operator", "body", in_body(
        "/v1/operators/relying-parties", {"name": "@", "kind": "platform_operator",
                                          "purposes": ["test"], "scopes": ["status"]}),
         accepts=frozenset({"line feed after an id"})),
    Slot("public key", "station", "body", lambda w, v: body(
        "POST", ISSUE, {"resident_id": w.other, "auth_public_key": "@",
                        "proofing_id": NO_PROOFING}, v)),
    Slot("challenge purpose", "anonymous", "body", in_body(
        "/v1/mobile/challenges", {"purpose": "@"})),
    *[Slot(f"signed data ({route})", "anonymous", "body", in_body(
        f"/v1/{route}", {"signed_data": "@"}))
      for route in ("mobile/applications", "mobile/revocations", "mobile/suspension-lifts",
                    "mobile/check-ins", "consents/withdrawals")],
]


def test_slot_ids_are_unique() -> None:
    assert len({s.id for s in SLOTS}) == len(SLOTS)


def _values(slot: Slot) -> dict[str, str]:
    if slot.where == "path":
        values = {name: quote(text, safe="") for name, text in BAD_TEXT.items()}
        values["not UTF-8"] = NOT_UTF8_IN_PATH
        return values
    values = {name: json.dumps(text) for name, text in BAD_TEXT.items()}
    values["lone surrogate"] = LONE_SURROGATE_JSON
    return values


def test_no_identifier_reaches_the_database_unchecked(
        api: Api, world: World, caplog: pytest.LogCaptureFixture) -> None:
    rp = api.caller(ClientRole.RP, "status", "linkage", "basic4")
    headers = {"operator": api.op, "station": api.station, "anonymous": {},
               "callcenter": api.caller(ClientRole.CALLCENTER).headers, "rp": rp.headers}
    w = replace(world, rp=api.services.relying_parties.list_all(
        authorize(api.operator, Operation.RP_READ))[0].id)
    failures = []
    for slot in SLOTS:
        for name, value in _values(slot).items():
            if name in slot.accepts:
                continue
            request = slot.request(w, value)
            request["headers"] = {**headers[slot.role], **request.get("headers", {})}
            before = api.snapshot()
            try:
                response = api.http.request(**request)
            except Exception as exc:  # raise_server_exceptions: what would have been a 500
                failures.append(f"{slot.id}, {name}: raised {type(exc).__name__}")
                continue
            media_type = response.headers.get("content-type", "").split(";")[0]
            if not (400 <= response.status_code < 500 and response.status_code not in (401, 403)
                    and media_type == "application/problem+json"):
                failures.append(f"{slot.id}, {name}: {response.status_code} {media_type} "
                                f"{response.text[:200]}")
                continue
            if response.json()["code"] == "request.unstorable":  # the database's net caught it
                failures.append(f"{slot.id}, {name}: not refused before the database")
                continue
            try:
                # Refusals on the relying-party routes (withdrawals among them) are audited;
                # nothing else may change.
                audited = slot.role == "rp" or request["url"].startswith("/v1/consents/")
                api.unchanged(before, audited=frozenset({"rp.refused"}) if audited
                              else frozenset())
            except AssertionError as exc:
                failures.append(f"{slot.id}, {name}: {exc}")
    assert not failures, f"{len(failures)} refusals went wrong:\n" + "\n".join(failures)
    for record in caplog.records:
        text = record.getMessage()
        assert record.exc_info is None and record.exc_text is None, (record.name, text)
        assert "Traceback" not in text and not any(c in text for c in "\x00\x01\x1f\x7f"), text


def _self_signed(key: rsa.RSAPrivateKey, at: datetime) -> bytes:
    """A certificate anyone can make: it signs a CMS SignedData that verifies as a structure,
    and is refused only once the service looks at whose it is."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not a holder")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(at - timedelta(days=1)).not_valid_after(at + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


def test_a_signed_request_naming_no_device_is_refused_before_the_lookup(
        api: Api, world: World) -> None:
    """Without credentials, anyone can sign a device request with a certificate of their own
    making; the device it names is looked up only if it is a device id."""
    key = rsa.generate_private_key(65537, 2048)
    at = api.services.clock.now()
    signer = _self_signed(key, at)
    before = api.snapshot()
    for device in ("\x00", "0123456789abcdef\x000123456789abcde", "\x01", "a" * 5000,
                   "0123456789abcdef0123456789abcdef\n"):
        r = api.http.post("/v1/mobile/challenges", json={"purpose": "check_in"})
        assert r.status_code == 201, r.text
        document = {"type": "jpki-mobile-check-in/1", "challenge": r.json()["challenge"],
                    "device": device}
        r = api.http.post("/v1/mobile/check-ins", json={
            "signed_data": base64.b64encode(signed(document, signer, key, at)).decode()})
        api.problem(r, 422, "mobile.signer_refused")
    api.unchanged(before)
