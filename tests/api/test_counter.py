"""The counter over HTTP: identity proofing, PIN-reset authorisation, delivery onto the card, the
sweep of certificates never delivered, and designated post offices.

reference §5: issuance, renewal and PIN resets happen only at the window after identity
proofing (reference §5, 「マイナンバーカード交付時の本人確認書類等」); §3.2: a certificate
destroyed before delivery is revoked with reason unspecified.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlalchemy import select

from jpki.access.authz import Operation, authorize
from jpki.errors import InvalidInput
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, ClientRole
from jpki.store.tables import audit_log, proofings
from tests.api.harness import ADULT, CHILD, IN_PERSON_B, ISSUE, OTHER, PROOFINGS, RENEW, Api

PIN_RESETS = "/v1/stations/pin-resets"
KIYOSE, CHIYODA = "132217", "131016"


def delivery(serial: str) -> str:
    return f"/v1/stations/certificates/{serial}/delivery"


def abandonment(serial: str) -> str:
    return f"/v1/stations/certificates/{serial}/abandonment"


def audit_rows(api: Api, action: str) -> list[dict[str, Any]]:
    with api.services.uow.engine.connect() as conn:
        rows = conn.execute(select(audit_log).where(audit_log.c.action == action)
                            .order_by(audit_log.c.seq)).mappings().all()
    return [dict(r) for r in rows]


def proofing_row(api: Api, proofing_id: str) -> dict[str, Any]:
    with api.services.uow.engine.connect() as conn:
        row = conn.execute(select(proofings).where(proofings.c.id == proofing_id)
                           ).mappings().one()
    return dict(row)


def cert_view(api: Api, serial: str) -> dict[str, Any]:
    r = api.http.get(f"/v1/certificates/{serial}", headers=api.op)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def ocsp_status(api: Api, serial: str) -> ocsp.OCSPResponse:
    """Ask the app's own OCSP endpoint, as a relying party's software would."""
    view = cert_view(api, serial)
    cert = x509.load_pem_x509_certificate(view["pem"].encode())
    ca = CaKind.SIGN if view["kind"] == "card_sign" else CaKind.AUTH
    with api.services.uow() as uow:
        issuer = x509.load_der_x509_certificate(uow.cas.current(ca).certificate_der)
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    r = api.http.post("/ocsp", content=request.public_bytes(Encoding.DER),
                      headers={"content-type": "application/ocsp-request"})
    assert r.status_code == 200
    response = ocsp.load_der_ocsp_response(r.content)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return response


# --- recording a proofing ------------------------------------------------------------------------

PATTERNS: dict[str, dict[str, Any]] = {
    "A": {"presence": "in_person", "applicant_documents": [{"type": "my_number_card"}],
          "measures": ["pin_entry"]},
    "B": IN_PERSON_B,
    "C": {"presence": "in_person", "applicant_documents": [
        {"type": "drivers_license"}, {"type": "health_insurance_card"}]},
    "D": {"presence": "in_person", "applicant_documents": [
        {"type": "inquiry_reply"}, {"type": "pension_certificate"},
        {"type": "bank_passbook"}]},
    "E": {"presence": "in_person", "measures": ["registry_hearing"], "applicant_documents": [
        {"type": "inquiry_reply"}, {"type": "health_insurance_card"},
        {"type": "receipt", "issued_on": "2026-10-31"}]},
}


def test_recording_a_proofing_answers_201_with_its_pattern(api: Api, clock: Any) -> None:
    resident = api.register(ADULT)
    for pattern, evidence in PATTERNS.items():
        r = api.http.post(PROOFINGS, headers=api.station,
                          json={"resident_id": resident, **evidence})
        assert r.status_code == 201, r.text
        body = r.json()
        assert set(body) == {"id", "resident_id", "pattern", "presence", "expires_at"}
        assert (body["resident_id"], body["pattern"], body["presence"]) == \
            (resident, pattern, "in_person")
        expires = (clock.now() + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
        assert body["expires_at"] == expires
        api.assert_no_personal_data(r.text, "the proofing answer")
        # What is kept is the shape of the evidence: types and measures, no numbers or dates.
        row = proofing_row(api, body["id"])
        assert (row["pattern"], row["used_at"], row["used_for"]) == (pattern, None, None)
        shape = json.loads(row["evidence"])
        assert shape["applicant_documents"] == sorted(
            d["type"] for d in evidence["applicant_documents"])
        assert "2026-10-31" not in row["evidence"]

    audited = audit_rows(api, "proofing.recorded")
    assert [json.loads(a["payload"])["pattern"] for a in audited] == list(PATTERNS)
    for a in audited:
        api.assert_no_personal_data(" ".join(map(str, a.values())), "the audit log")


def test_a_proxy_pick_up_for_a_child_with_the_guardians_photo_certificate(api: Api) -> None:
    """The 2020 revision: a legal guardian's photo certificate counts as the photo 乙 of an
    applicant under 15 (proxy pattern C)."""
    child = api.register(CHILD)
    evidence = {
        "presence": "proxy", "delegation_letter": True, "hardship_proof": True,
        "applicant_documents": [{"type": "guardian_photo_certificate"},
                                {"type": "health_insurance_card"},
                                {"type": "child_medical_certificate"}],
        "proxy_documents": [{"type": "drivers_license"}, {"type": "health_insurance_card"}],
    }
    r = api.http.post(PROOFINGS, headers=api.station, json={"resident_id": child, **evidence})
    assert r.status_code == 201, r.text
    assert (r.json()["pattern"], r.json()["presence"]) == ("C", "proxy")

    # An adult's guardian certifies nothing: the same documents for ADULT are refused.
    adult = api.register(ADULT)
    before = api.snapshot()
    r = api.http.post(PROOFINGS, headers=api.station, json={"resident_id": adult, **evidence})
    body = api.problem(r, 422, "proofing.insufficient")
    assert "guardian_photo_certificate: only for an applicant under 15" in body["detail"]
    api.unchanged(before)


def test_insufficient_documents_are_422_naming_what_is_missing(api: Api) -> None:
    resident = api.register(ADULT)
    station = api.station  # made (and audited) before the snapshot
    before = api.snapshot()

    r = api.http.post(PROOFINGS, headers=station, json={
        "resident_id": resident, "presence": "in_person",
        "applicant_documents": [{"type": "drivers_license"}]})
    body = api.problem(r, 422, "proofing.insufficient")
    assert "none of patterns A–E" in body["detail"]
    assert "甲 1, 乙 0 of which 0 with a photo, 照会回答書 0, receipts 0" in body["detail"]
    assert resident not in r.text

    r = api.http.post(PROOFINGS, headers=station, json={
        "resident_id": resident, "presence": "proxy", "hardship_proof": True,
        "applicant_documents": [{"type": "passport"}, {"type": "health_insurance_card"}],
        "proxy_documents": [{"type": "drivers_license"}, {"type": "my_number_card"}]})
    body = api.problem(r, 422, "proofing.insufficient")
    assert "委任状" in body["detail"] and "疎明資料" not in body["detail"]
    api.unchanged(before)


# --- issuance and renewal consume a proofing -----------------------------------------------------


def test_issuance_consumes_the_proofing(api: Api, clock: Any, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    proofing = api.proof(resident)
    issued = api.issue(resident, auth=subject_keys[0], proofing_id=proofing)
    assert [c["kind"] for c in issued["certificates"]] == ["card_auth"]
    row = proofing_row(api, proofing)
    assert (row["used_at"], row["used_for"]) == (clock.now(), "issuance")

    before = api.snapshot()
    again = api.http.post(ISSUE, headers=api.station, json={
        "resident_id": resident, "sign_public_key": subject_keys[1].decode(),
        "proofing_id": proofing})
    body = api.problem(again, 422, "proofing.required")
    assert "used already" in body["detail"]
    api.unchanged(before)


def test_renewal_consumes_a_proofing(api: Api, clock: Any, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    old = api.issue(resident, auth=subject_keys[0])["certificates"][0]
    not_after = cert_view(api, old["serial"])["not_after"]
    clock.set(datetime.fromisoformat(not_after.replace("Z", "+00:00")) - timedelta(days=30))
    proofing = api.proof(resident)
    r = api.http.post(RENEW, headers=api.station, json={
        "resident_id": resident, "auth_public_key": subject_keys[1].decode(),
        "proofing_id": proofing})
    assert r.status_code == 201, r.text
    assert r.json()["certificates"][0]["predecessor"] == old["serial"]
    assert proofing_row(api, proofing)["used_for"] == "renewal"


def test_the_operator_cli_principal_issues_without_a_proofing(
        api: Api, clock: Any, subject_keys: list[bytes]) -> None:
    """The CA's own operator (role None, the local CLI) needs none, and its certificates need
    no delivery confirmation: the sweep leaves them alone."""
    resident = api.register(ADULT)
    (issued,) = api.services.issuance.issue(
        authorize(api.operator, Operation.CERTIFICATE_ISSUE), resident,
        [KeyRequest(CertKind.CARD_AUTH, subject_keys[0])])
    clock.advance(hours=48)
    assert api.services.counter.sweep_undelivered(
        authorize(api.operator, Operation.DELIVERY_SWEEP)) == []
    assert cert_view(api, issued.serial)["status"] == "good"


# --- PIN resets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pin", ["auth", "sign"])
def test_pin_reset_consumes_a_proofing_and_is_audited_without_personal_data(
        api: Api, clock: Any, pin: str) -> None:
    resident = api.register(ADULT)
    proofing = api.proof(resident)

    r = api.http.post(PIN_RESETS, headers=api.station,
                      json={"resident_id": resident, "pin": pin, "proofing_id": proofing})

    assert r.status_code == 200, r.text
    assert r.json() == {"resident_id": resident, "pin": pin,
                        "authorised_at": clock.now().isoformat().replace("+00:00", "Z")}
    assert proofing_row(api, proofing)["used_for"] == f"pin_reset:{pin}"
    (record,) = audit_rows(api, "card.pin_reset")
    assert record["subject"] == resident
    assert record["actor"] == f"client:{api.caller(ClientRole.STATION).client_id}"
    assert json.loads(record["payload"]) == {"pin": pin, "proofing": proofing}
    api.assert_no_personal_data(" ".join(map(str, record.values())), "the PIN-reset audit")

    # Single use: the second reset needs a new proofing.
    before = api.snapshot()
    again = api.http.post(PIN_RESETS, headers=api.station,
                          json={"resident_id": resident, "pin": pin, "proofing_id": proofing})
    api.problem(again, 422, "proofing.required")
    api.unchanged(before)


# --- delivery onto the card ----------------------------------------------------------------------


def test_delivery_is_confirmed_by_the_issuing_station_once(
        api: Api, clock: Any, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    serial = api.issue(resident, auth=subject_keys[0])["certificates"][0]["serial"]
    other = api.caller(ClientRole.STATION, "municipality:132217").headers

    before = api.snapshot()
    for method in (delivery, abandonment):
        api.problem(api.http.post(method(serial), headers=other), 403, "auth.forbidden")
    api.unchanged(before)

    clock.advance(minutes=5)
    first = api.http.post(delivery(serial), headers=api.station)
    assert first.status_code == 200, first.text
    delivered_at = clock.now().isoformat().replace("+00:00", "Z")
    assert first.json() == {"serial": serial, "delivered_at": delivered_at}
    (record,) = audit_rows(api, "certificate.delivered")
    assert record["subject"] == serial

    # Idempotent: the same answer, nothing recorded again.
    clock.advance(minutes=5)
    before = api.snapshot()
    second = api.http.post(delivery(serial), headers=api.station)
    assert second.status_code == 200, second.text
    assert second.json() == first.json()
    api.unchanged(before)

    # Delivered: no longer the station's to abandon.
    api.problem(api.http.post(abandonment(serial), headers=api.station), 409, "conflict")
    api.unchanged(before)
    assert cert_view(api, serial)["status"] == "good"


def test_an_operator_of_the_residents_municipality_confirms_or_abandons_for_a_station(
        api: Api, subject_keys: list[bytes]) -> None:
    """When the station's own confirmation never came, a person at the resident's counter (an
    operator scoped to that municipality: the console's clerk) confirms or abandons — nobody
    else (architecture §3.5)."""
    resident = api.register(ADULT)
    certs = {c["kind"]: c["serial"] for c in
             api.issue(resident, sign=subject_keys[0], auth=subject_keys[1])["certificates"]}
    kiyose = api.caller(ClientRole.OPERATOR, f"municipality:{KIYOSE}").headers
    chiyoda = api.caller(ClientRole.OPERATOR, f"municipality:{CHIYODA}").headers

    before = api.snapshot()
    for method in (delivery, abandonment):
        api.problem(api.http.post(method(certs["card_auth"]), headers=chiyoda), 403,
                    "auth.scope_missing")
    api.unchanged(before)

    confirmed = api.http.post(delivery(certs["card_auth"]), headers=kiyose)
    assert confirmed.status_code == 200, confirmed.text
    abandoned = api.http.post(abandonment(certs["card_sign"]), headers=kiyose)
    assert abandoned.status_code == 200, abandoned.text
    assert abandoned.json()["reason"] == "unspecified"
    (record,) = audit_rows(api, "certificate.delivered")
    assert record["subject"] == certs["card_auth"] and record["actor"].startswith("client:")
    assert cert_view(api, certs["card_sign"])["status"] == "revoked"

    # A certificate nobody delivers (issued by the CA's operator, not a station) is no one's.
    other = api.register(ADULT | {"name": "瀬戸内 あかり"})
    (cli,) = api.services.issuance.issue(
        authorize(api.operator, Operation.CERTIFICATE_ISSUE), other,
        [KeyRequest(CertKind.CARD_AUTH, subject_keys[2])])
    api.problem(api.http.post(delivery(cli.serial), headers=kiyose), 403, "auth.forbidden")


def test_abandonment_before_delivery_revokes_unspecified(
        api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    certs = {c["kind"]: c for c in
             api.issue(resident, sign=subject_keys[0], auth=subject_keys[1])["certificates"]}
    sign, auth = certs["card_sign"]["serial"], certs["card_auth"]["serial"]

    r = api.http.post(abandonment(sign), headers=api.station)

    assert r.status_code == 200, r.text
    assert (r.json()["serial"], r.json()["reason"], r.json()["changed"]) == \
        (sign, "unspecified", True)
    view = cert_view(api, sign)
    assert (view["status"], view["revocation_reason"]) == ("revoked", "unspecified")
    assert view["revoked_at"] == r.json()["revoked_at"]
    assert cert_view(api, auth)["status"] == "good"
    (record,) = audit_rows(api, "certificate.revoked")
    assert record["subject"] == sign
    assert json.loads(record["payload"])["cause"] == "not delivered"

    # OCSP says revoked; RFC 5280 §5.3.1: no reasonCode rather than "unspecified".
    answer = ocsp_status(api, sign)
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason is None
    assert ocsp_status(api, auth).certificate_status is ocsp.OCSPCertStatus.GOOD
    # ... and so does the municipality's CRL.
    api.services.crls.publish(api.services.crls.scope(CaKind.SIGN, 1, KIYOSE))
    crl = x509.load_der_x509_crl(api.http.get(f"/crl/sign/g01/{KIYOSE}.crl").content)
    entry = crl.get_revoked_certificate_by_serial_number(int(sign, 16))
    assert entry is not None
    with pytest.raises(x509.ExtensionNotFound):
        entry.extensions.get_extension_for_class(x509.CRLReason)

    # Abandoning again changes nothing; confirming the delivery now is a conflict.
    before = api.snapshot()
    again = api.http.post(abandonment(sign), headers=api.station)
    assert again.status_code == 200, again.text
    assert again.json() == {**r.json(), "changed": False}
    api.problem(api.http.post(delivery(sign), headers=api.station), 409, "conflict")
    api.unchanged(before)


# --- the sweep of undelivered certificates -------------------------------------------------------


def test_the_sweep_revokes_what_was_never_delivered(
        api: Api, clock: Any, subject_keys: list[bytes]) -> None:
    resident, other = api.register(ADULT), api.register(OTHER)
    certs = {c["kind"]: c["serial"] for c in
             api.issue(resident, sign=subject_keys[0], auth=subject_keys[1])["certificates"]}
    delivered = api.issue(other, auth=subject_keys[2])["certificates"][0]["serial"]
    r = api.http.post(delivery(delivered), headers=api.station)
    assert r.status_code == 200, r.text
    r = api.http.post(delivery(certs["card_auth"]), headers=api.station)
    assert r.status_code == 200, r.text

    clock.advance(hours=24)  # not yet: the timeout is "older than 24 hours"
    before = api.snapshot()
    assert api.services.counter.sweep_undelivered(
        authorize(api.operator, Operation.DELIVERY_SWEEP)) == []
    api.unchanged(before)

    clock.advance(seconds=1)
    assert api.services.counter.sweep_undelivered(
        authorize(api.operator, Operation.DELIVERY_SWEEP)) == [certs["card_sign"]]
    view = cert_view(api, certs["card_sign"])
    assert (view["status"], view["revocation_reason"]) == ("revoked", "unspecified")
    assert cert_view(api, certs["card_auth"])["status"] == "good"
    assert cert_view(api, delivered)["status"] == "good"
    (record,) = audit_rows(api, "certificate.revoked")
    assert json.loads(record["payload"])["cause"] == "delivery not confirmed"
    assert record["actor"] == api.operator.actor

    # Swept once: the next pass finds nothing.
    before = api.snapshot()
    assert api.services.counter.sweep_undelivered(
        authorize(api.operator, Operation.DELIVERY_SWEEP)) == []
    api.unchanged(before)


# --- designated post offices ---------------------------------------------------------------------


def test_a_post_office_acts_for_the_municipalities_that_designated_it(
        api: Api, subject_keys: list[bytes]) -> None:
    post_office = api.caller(ClientRole.STATION, f"municipality:{KIYOSE}",
                             station_kind="post_office").headers
    with api.services.uow() as uow:
        client = uow.clients.get_by_client_id(
            api.caller(ClientRole.STATION, f"municipality:{KIYOSE}",
                       station_kind="post_office").client_id)
    assert client is not None and client.station_kind == "post_office"

    kiyose, chiyoda = api.register(ADULT), api.register(OTHER)
    proofing = api.proof(kiyose, post_office)
    issued = api.issue(kiyose, auth=subject_keys[0], headers=post_office, proofing_id=proofing)
    serial = issued["certificates"][0]["serial"]
    r = api.http.post(delivery(serial), headers=post_office)
    assert r.status_code == 200, r.text
    r = api.http.post(PIN_RESETS, headers=post_office, json={
        "resident_id": kiyose, "pin": "auth", "proofing_id": api.proof(kiyose, post_office)})
    assert r.status_code == 200, r.text

    # 千代田区 did not designate it. Even with a proofing of that resident from a counter.
    counter_proofing = api.proof(chiyoda)
    before = api.snapshot()
    for path, body in (
            (PROOFINGS, {"resident_id": chiyoda, **IN_PERSON_B}),
            (ISSUE, {"resident_id": chiyoda, "auth_public_key": subject_keys[1].decode(),
                     "proofing_id": counter_proofing}),
            (RENEW, {"resident_id": chiyoda, "auth_public_key": subject_keys[1].decode(),
                     "proofing_id": counter_proofing}),
            (PIN_RESETS, {"resident_id": chiyoda, "pin": "sign",
                          "proofing_id": counter_proofing})):
        answer = api.problem(api.http.post(path, headers=post_office, json=body), 403,
                             "auth.scope_missing")
        assert answer["context"] == {"scope": f"municipality:{CHIYODA}"}, path
    api.unchanged(before)


@pytest.mark.parametrize(("role", "scopes", "kind", "field"), [
    (ClientRole.STATION, [], "post_office", "scopes"),  # designated by no municipality
    (ClientRole.STATION, [f"municipality:{KIYOSE}"], "bank", "station_kind"),
    (ClientRole.OPERATOR, [f"municipality:{KIYOSE}"], "post_office", "station_kind"),
    (ClientRole.OPERATOR, [], "counter", "station_kind"),
])
def test_station_kind_is_checked_when_a_client_is_created(
        api: Api, role: ClientRole, scopes: list[str], kind: str, field: str) -> None:
    before = api.snapshot()
    with pytest.raises(InvalidInput) as caught:
        api.services.clients.create(
            authorize(api.operator, Operation.CLIENT_CREATE),
            name="Kiyose PO", role=role, scopes=scopes,
            station_kind=kind)
    assert caught.value.context == {"field": field}
    api.unchanged(before)
    with api.services.uow() as uow:
        assert [c for c in uow.clients.all() if c.name == "Kiyose PO"] == []


def test_a_station_is_a_counter_by_default(api: Api) -> None:
    made = api.services.clients.create(
        authorize(api.operator, Operation.CLIENT_CREATE), name="desk", role=ClientRole.STATION)
    assert made.client.station_kind == "counter"
    made = api.services.clients.create(
        authorize(api.operator, Operation.CLIENT_CREATE), name="ops", role=ClientRole.OPERATOR)
    assert made.client.station_kind is None
