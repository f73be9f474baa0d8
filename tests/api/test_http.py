"""The REST API end to end, in process: the happy paths of each route.

Authorisation is in test_http_auth.py, refused input in test_http_bad_input.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from jpki.basic4 import normalize_address, normalize_name
from jpki.model import CaKind
from tests.api.harness import ADULT, CHILD, OTHER, Api

BASIC4_FIELDS = ("name", "birth_date", "sex", "address")


def by_kind(issued: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in issued["certificates"]}


def spki(pem: bytes) -> bytes:
    return load_pem_public_key(pem).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


# --- residents ---------------------------------------------------------------------------------


def test_register_resident_answers_201_without_basic4(api: Api) -> None:
    api.remember(ADULT)
    r = api.http.post("/v1/operators/residents", json=ADULT, headers=api.op)

    assert r.status_code == 201, r.text
    body = r.json()
    assert body["municipality_code"] == "132217"
    assert body["status"] == "active"
    assert body["registry_source"] == "juminhyo"
    assert len(body["id"]) == 32
    # Not even as null: the registration echoes nothing of the basic 4 information.
    assert not set(BASIC4_FIELDS) & set(body), body
    api.assert_no_personal_data(r.text, "the registration answer")


def test_get_resident_shows_basic4_to_operators_only(api: Api) -> None:
    resident = api.register(ADULT)

    as_operator = api.http.get(f"/v1/operators/residents/{resident}", headers=api.op)
    assert as_operator.status_code == 200, as_operator.text
    record = as_operator.json()
    assert record["id"] == resident
    assert record["name"] == normalize_name(ADULT["name"])
    assert record["address"] == normalize_address(ADULT["address"])
    assert record["birth_date"] == ADULT["birth_date"]
    assert record["sex"] == ADULT["sex"]

    as_station = api.http.get(f"/v1/operators/residents/{resident}", headers=api.station)
    assert as_station.status_code == 200, as_station.text
    view = as_station.json()
    assert view["id"] == resident
    assert view["municipality_code"] == "132217"
    assert not set(BASIC4_FIELDS) & set(view), view
    api.assert_no_personal_data(as_station.text, "the station's view of a resident")


def test_residents_are_found_by_reading_and_birth_date_in_the_body(api: Api) -> None:
    """POST /v1/operators/resident-searches: the name (or its reading) and the date of birth in
    the body, never in a URL; the operator gets the records with their reading."""
    resident = api.register({**ADULT, "name_kana": "やまだ たろう"})
    found = api.http.post("/v1/operators/resident-searches", headers=api.op,
                          json={"name": "ヤマダ タロウ", "birth_date": ADULT["birth_date"]})
    assert found.status_code == 200, found.text
    (record,) = found.json()["residents"]
    assert record["id"] == resident and record["name_kana"] == "ヤマダ\u3000タロウ"
    refused = api.http.post("/v1/operators/resident-searches", headers=api.station,
                            json={"name": "ヤマダ タロウ", "birth_date": ADULT["birth_date"]})
    assert refused.status_code == 403
    bad = api.http.post("/v1/operators/resident-searches", headers=api.op,
                        json={"name": "ヤマダ タロウ", "birth_date": 19900102})
    assert bad.status_code == 422


def test_registration_and_lookup_agree_on_signing_eligibility(api: Api) -> None:
    """reference §1.4: a signing certificate from the 15th birthday on. The registration answer
    and a later GET say the same, for an adult, a child, and either side of a 15th birthday
    (the clock stands at 2026-11-27, 10:00 JST)."""
    for person, eligible in ((ADULT, True), (CHILD, False),
                             ({**OTHER, "birth_date": "2011-11-27"}, True),
                             ({**OTHER, "birth_date": "2011-11-28"}, False)):
        api.remember(person)
        registered = api.http.post("/v1/operators/residents", json=person, headers=api.op)
        assert registered.status_code == 201, registered.text
        assert registered.json()["signing_eligible"] is eligible, person["birth_date"]
        resident = registered.json()["id"]
        for headers in (api.op, api.station):
            looked_up = api.http.get(f"/v1/operators/residents/{resident}", headers=headers)
            assert looked_up.status_code == 200, looked_up.text
            assert looked_up.json()["signing_eligible"] is eligible, person["birth_date"]


# --- issuance ----------------------------------------------------------------------------------


def test_issue_both_card_certificates(api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    proofing = api.proof(resident)
    r = api.http.post("/v1/stations/certificates", headers=api.station, json={
        "resident_id": resident, "sign_public_key": subject_keys[0].decode(),
        "auth_public_key": subject_keys[1].decode(), "proofing_id": proofing})

    assert r.status_code == 201, r.text
    issued = r.json()
    assert issued["card_number"]
    certs = by_kind(issued)
    assert set(certs) == {"card_sign", "card_auth"}
    sign, auth = certs["card_sign"], certs["card_auth"]
    assert sign["sibling"] == auth["serial"] and auth["sibling"] == sign["serial"]
    assert sign["predecessor"] is None and auth["predecessor"] is None
    for cert, key, ca in ((sign, subject_keys[0], "sign"), (auth, subject_keys[1], "auth")):
        assert cert["status"] == "good"
        assert cert["shard"] == "132217"
        assert cert["issuer"] == f"{ca}/g01"
        parsed = x509.load_pem_x509_certificate(cert["pem"].encode("ascii"))
        assert format(parsed.serial_number, "x") == cert["serial"]
        assert parsed.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == spki(key)
        assert parsed.not_valid_after_utc.isoformat().replace("+00:00", "Z") == cert["not_after"]
    # reference §1.4: the signing certificate ends no later than the auth certificate.
    assert sign["not_after"] <= auth["not_after"]
    # The signing certificate carries the basic 4 information in its SAN; the auth one does not.
    sign_der = x509.load_pem_x509_certificate(sign["pem"].encode()).public_bytes(Encoding.DER)
    auth_der = x509.load_pem_x509_certificate(auth["pem"].encode()).public_bytes(Encoding.DER)
    family = normalize_name(ADULT["name"]).split("\u3000")[0]
    assert family.encode("utf-8") in sign_der
    assert family.encode("utf-8") not in auth_der


def test_get_certificate_as_operator_and_station(api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    issued = by_kind(api.issue(resident, sign=subject_keys[0], auth=subject_keys[1]))

    for headers in (api.op, api.station):
        for kind, cert in issued.items():
            r = api.http.get(f"/v1/certificates/{cert['serial']}", headers=headers)
            assert r.status_code == 200, r.text
            assert r.json() == cert, kind
    # Serials are accepted in any of the usual spellings.
    serial = issued["card_auth"]["serial"]
    spelled = "0x" + ":".join(serial[i:i + 2] for i in range(0, len(serial), 2)).upper()
    r = api.http.get(f"/v1/certificates/{spelled}", headers=api.op)
    assert r.status_code == 200 and r.json()["serial"] == serial


def test_issue_auth_only_then_signing_links_the_pair(api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    auth = api.issue(resident, auth=subject_keys[0])["certificates"][0]
    assert auth["kind"] == "card_auth" and auth["sibling"] is None

    sign = api.issue(resident, sign=subject_keys[1])["certificates"][0]
    assert sign["kind"] == "card_sign" and sign["sibling"] == auth["serial"]
    again = api.http.get(f"/v1/certificates/{auth['serial']}", headers=api.op).json()
    assert again["sibling"] == sign["serial"]


# --- resident events ---------------------------------------------------------------------------


def test_address_change_revokes_the_signing_certificate_only(
        api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    certs = by_kind(api.issue(resident, sign=subject_keys[0], auth=subject_keys[1]))
    new_address = "東京都清瀬市竹丘三丁目４番５号 コーポ機密２０２"
    api.remember({"address": new_address})

    r = api.http.post(f"/v1/operators/residents/{resident}/events", headers=api.op,
                      json={"kind": "address", "address": new_address})

    assert r.status_code == 200, r.text
    outcome = r.json()
    assert outcome["resident_id"] == resident and outcome["changed"] is True
    assert [x["serial"] for x in outcome["revoked"]] == [certs["card_sign"]["serial"]]
    assert outcome["revoked"][0]["reason"] == "affiliationChanged"
    api.assert_no_personal_data(r.text, "the event answer")
    sign = api.http.get(f"/v1/certificates/{certs['card_sign']['serial']}", headers=api.op)
    assert sign.json()["status"] == "revoked"
    assert sign.json()["revocation_reason"] == "affiliationChanged"
    auth = api.http.get(f"/v1/certificates/{certs['card_auth']['serial']}", headers=api.op)
    assert auth.json()["status"] == "good"
    record = api.http.get(f"/v1/operators/residents/{resident}", headers=api.op).json()
    assert record["address"] == normalize_address(new_address)

    # Replaying the same change does nothing and records nothing.
    before = api.snapshot()
    replay = api.http.post(f"/v1/operators/residents/{resident}/events", headers=api.op,
                           json={"kind": "address", "address": new_address})
    assert replay.status_code == 200
    assert replay.json() == {"resident_id": resident, "changed": False, "revoked": []}
    api.unchanged(before)


def test_move_to_another_municipality(api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    certs = by_kind(api.issue(resident, sign=subject_keys[0], auth=subject_keys[1]))
    api.remember({"address": OTHER["address"]})

    r = api.http.post(f"/v1/operators/residents/{resident}/events", headers=api.op, json={
        "kind": "address", "address": OTHER["address"], "municipality_code": "131016"})

    assert r.status_code == 200, r.text
    assert [x["serial"] for x in r.json()["revoked"]] == [certs["card_sign"]["serial"]]
    view = api.http.get(f"/v1/operators/residents/{resident}", headers=api.station).json()
    assert view["municipality_code"] == "131016"


def test_death_revokes_everything(api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    certs = by_kind(api.issue(resident, sign=subject_keys[0], auth=subject_keys[1]))

    r = api.http.post(f"/v1/operators/residents/{resident}/events", headers=api.op,
                      json={"kind": "death", "date": "2026-11-26"})

    assert r.status_code == 200, r.text
    revoked = {x["serial"]: x["reason"] for x in r.json()["revoked"]}
    assert revoked == {c["serial"]: "cessationOfOperation" for c in certs.values()}
    record = api.http.get(f"/v1/operators/residents/{resident}", headers=api.op).json()
    assert record["status"] == "deceased"


def test_emigration_revokes_signing_on_the_departure_date(
        api: Api, clock: Any, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    certs = by_kind(api.issue(resident, sign=subject_keys[0], auth=subject_keys[1]))
    abroad = "VIA SEGRETA 7 ROMA ITALIA"
    api.remember({"address": abroad})

    r = api.http.post(f"/v1/operators/residents/{resident}/events", headers=api.op,
                      json={"kind": "emigration", "address": abroad, "date": "2026-12-10"})

    assert r.status_code == 200, r.text
    # Effective at 00:00 JST of the departure date, reported in UTC like every instant.
    assert r.json()["revoked"] == [{"serial": certs["card_sign"]["serial"],
                                    "reason": "affiliationChanged",
                                    "revoked_at": "2026-12-09T15:00:00Z", "changed": True}]
    record = api.http.get(f"/v1/operators/residents/{resident}", headers=api.op).json()
    assert (record["registry_source"], record["emigrated_on"]) == ("koseki_fuhyo", "2026-12-10")
    sign_url = f"/v1/certificates/{certs['card_sign']['serial']}"
    assert api.http.get(sign_url, headers=api.op).json()["status"] == "good"  # until departure

    # §1.3: the new signing certificate (from the 戸籍の附票) only from the departure date.
    proofing = api.proof(resident)
    before = api.snapshot()
    early = api.http.post("/v1/stations/certificates", headers=api.station, json={
        "resident_id": resident, "sign_public_key": subject_keys[2].decode(),
        "proofing_id": proofing})
    api.problem(early, 422, "policy.emigration_pending")
    api.unchanged(before)  # the proofing too: it is still unused

    clock.set(datetime(2026, 12, 10, 1, 0, tzinfo=UTC))
    old = api.http.get(sign_url, headers=api.op).json()
    assert (old["status"], old["revoked_at"]) == ("revoked", "2026-12-09T15:00:00Z")
    new = api.issue(resident, sign=subject_keys[2])["certificates"][0]
    assert new["predecessor"] == certs["card_sign"]["serial"]
    assert new["sibling"] == certs["card_auth"]["serial"]
    assert api.http.get(sign_url, headers=api.op).json()["successor"] == new["serial"]


def test_replaying_an_emigration_changes_nothing(api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    api.issue(resident, sign=subject_keys[0], auth=subject_keys[1])
    event = {"kind": "emigration", "address": "VIA SEGRETA 7 ROMA ITALIA", "date": "2026-12-10"}
    api.remember({"address": event["address"]})
    first = api.http.post(f"/v1/operators/residents/{resident}/events", headers=api.op,
                          json=event)
    assert first.status_code == 200 and first.json()["changed"] is True

    before = api.snapshot()
    replay = api.http.post(f"/v1/operators/residents/{resident}/events", headers=api.op,
                           json=event)
    assert replay.status_code == 200, replay.text
    assert replay.json() == {"resident_id": resident, "changed": False, "revoked": []}
    api.unchanged(before)


# --- cards -------------------------------------------------------------------------------------


def test_card_lost_puts_certificates_on_hold_and_found_revokes_them(
        api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    issued = api.issue(resident, sign=subject_keys[0], auth=subject_keys[1])
    number, serials = issued["card_number"], {c["serial"] for c in issued["certificates"]}

    lost = api.http.post(f"/v1/operators/cards/{number}/events", headers=api.op,
                         json={"kind": "lost"})
    assert lost.status_code == 200, lost.text
    assert lost.json()["status"] == "lost" and lost.json()["number"] == number
    assert {x["serial"]: x["reason"] for x in lost.json()["revoked"]} == \
        dict.fromkeys(serials, "certificateHold")
    for serial in serials:
        view = api.http.get(f"/v1/certificates/{serial}", headers=api.op).json()
        assert (view["status"], view["revocation_reason"]) == ("revoked", "certificateHold")

    # §3.2: a card hold is never released; finding the card revokes for good.
    found = api.http.post(f"/v1/operators/cards/{number}/events", headers=api.op,
                          json={"kind": "found"})
    assert found.status_code == 200, found.text
    assert found.json()["status"] == "returned"
    assert {x["serial"]: x["reason"] for x in found.json()["revoked"]} == \
        dict.fromkeys(serials, "cessationOfOperation")

    # New certificates go on a new card, linked old→new.
    again = by_kind(api.issue(resident, sign=subject_keys[2], auth=subject_keys[3]))
    assert again["card_sign"]["predecessor"] in serials
    assert again["card_auth"]["predecessor"] in serials


def test_card_returned_revokes_its_certificates(api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    issued = api.issue(resident, sign=subject_keys[0], auth=subject_keys[1])

    r = api.http.post(f"/v1/operators/cards/{issued['card_number']}/events", headers=api.op,
                      json={"kind": "returned"})

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "returned"
    assert {x["reason"] for x in r.json()["revoked"]} == {"cessationOfOperation"}
    assert len(r.json()["revoked"]) == 2


def test_register_new_card_supersedes_the_old_one(api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    issued = api.issue(resident, sign=subject_keys[0], auth=subject_keys[1])

    r = api.http.post("/v1/operators/cards", headers=api.op, json={
        "resident_id": resident, "number": "NEWCARD0001", "expires_on": "2029-06-30"})

    assert r.status_code == 201, r.text
    card = r.json()
    assert card["number"] == "NEWCARD0001" and card["status"] == "active"
    assert card["resident_id"] == resident and card["expires_on"] == "2029-06-30"
    assert {x["serial"] for x in card["revoked"]} == {c["serial"] for c in issued["certificates"]}
    assert {x["reason"] for x in card["revoked"]} == {"superseded"}
    new = api.issue(resident, sign=subject_keys[2], auth=subject_keys[3])
    assert new["card_number"] == "NEWCARD0001"
    # reference §1.4: capped by the card's expiry (before the 5th birthday, 2031-01-02).
    assert {c["not_after"] for c in new["certificates"]} == {"2029-06-30T14:59:59Z"}


def test_a_new_card_in_place_of_a_lost_one_makes_the_hold_permanent(
        api: Api, clock: Any, subject_keys: list[bytes]) -> None:
    """再交付: the lost card is replaced, and its held certificates revoked for good as
    superseded — the hold's date staying the revocation date (RFC 5280 §5.3.1; a card hold is
    never released, reference §3.2)."""
    resident = api.register(ADULT)
    issued = api.issue(resident, sign=subject_keys[0], auth=subject_keys[1])
    number, serials = issued["card_number"], {c["serial"] for c in issued["certificates"]}
    lost = api.http.post(f"/v1/operators/cards/{number}/events", headers=api.op,
                         json={"kind": "lost"})
    held_at = {x["revoked_at"] for x in lost.json()["revoked"]}
    clock.advance(days=3)

    r = api.http.post("/v1/operators/cards", headers=api.op, json={"resident_id": resident})

    assert r.status_code == 201, r.text
    assert r.json()["status"] == "active" and r.json()["number"] != number
    assert {x["serial"]: x["reason"] for x in r.json()["revoked"]} == \
        dict.fromkeys(serials, "superseded")
    assert {x["revoked_at"] for x in r.json()["revoked"]} == held_at
    # The replaced card is over: neither found nor returned any more.
    for kind in ("found", "returned"):
        api.problem(api.http.post(f"/v1/operators/cards/{number}/events", headers=api.op,
                                  json={"kind": kind}), 422, "card.inactive")


# --- renewal -----------------------------------------------------------------------------------


def test_renewal_inside_the_window(api: Api, clock: Any, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    old = by_kind(api.issue(resident, sign=subject_keys[0], auth=subject_keys[1]))
    not_after = max(api.http.get(f"/v1/certificates/{c['serial']}", headers=api.op)
                    .json()["not_after"] for c in old.values())
    clock.set(datetime.fromisoformat(not_after.replace("Z", "+00:00")) - timedelta(days=60))

    r = api.http.post("/v1/stations/renewals", headers=api.station, json={
        "resident_id": resident, "sign_public_key": subject_keys[2].decode(),
        "auth_public_key": subject_keys[3].decode(), "proofing_id": api.proof(resident)})

    assert r.status_code == 201, r.text
    new = by_kind(r.json())
    assert set(new) == {"card_sign", "card_auth"}
    for kind in new:
        assert new[kind]["predecessor"] == old[kind]["serial"]
        assert new[kind]["status"] == "good"
        # reference §1.4: a renewal runs to the 6th birthday, so past the old notAfter.
        assert new[kind]["not_after"] > old[kind]["not_after"]
        before = api.http.get(f"/v1/certificates/{old[kind]['serial']}", headers=api.op).json()
        assert before["status"] == "revoked"
        assert before["revocation_reason"] == "superseded"
        assert before["successor"] == new[kind]["serial"]
    assert new["card_sign"]["sibling"] == new["card_auth"]["serial"]
    assert new["card_auth"]["sibling"] == new["card_sign"]["serial"]


# --- revocation --------------------------------------------------------------------------------


def test_revocation_is_acknowledged_once_and_then_idempotent(
        api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    auth = api.issue(resident, auth=subject_keys[0])["certificates"][0]
    path = f"/v1/operators/certificates/{auth['serial']}/revocation"

    first = api.http.post(path, headers=api.op, json={"reason": "keyCompromise"})
    assert first.status_code == 200, first.text
    assert first.json()["serial"] == auth["serial"]
    assert first.json()["reason"] == "keyCompromise"
    assert first.json()["changed"] is True

    before = api.snapshot()
    second = api.http.post(path, headers=api.op, json={"reason": "keyCompromise"})
    assert second.status_code == 200, second.text
    assert second.json() == {**first.json(), "changed": False}
    api.unchanged(before)

    view = api.http.get(f"/v1/certificates/{auth['serial']}", headers=api.op).json()
    assert (view["status"], view["revocation_reason"]) == ("revoked", "keyCompromise")


def test_revocation_reason_spellings(api: Api, subject_keys: list[bytes]) -> None:
    resident = api.register(ADULT)
    certs = by_kind(api.issue(resident, sign=subject_keys[0], auth=subject_keys[1]))
    for serial, spelled, name in ((certs["card_sign"]["serial"], "cessation_of_operation",
                                   "cessationOfOperation"),
                                  (certs["card_auth"]["serial"], "1", "keyCompromise")):
        r = api.http.post(f"/v1/operators/certificates/{serial}/revocation", headers=api.op,
                          json={"reason": spelled})
        assert r.status_code == 200, r.text
        assert r.json()["reason"] == name


# --- public resources --------------------------------------------------------------------------


def test_ca_certificates_are_public_der(api: Api) -> None:
    generations = {(g.ca, g.generation): g for g in api.services.cas.generations()}
    for ca in CaKind:
        r = api.http.get(f"/ca/{ca.value}/g01.cer")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/pkix-cert"
        assert "max-age" in r.headers.get("cache-control", "")
        cert = x509.load_der_x509_certificate(r.content)
        assert r.content == generations[(ca, 1)].certificate_der
        assert cert.subject == cert.issuer  # a root
    api.problem(api.http.get("/ca/sign/g99.cer"), 404, "not_found")


def test_openapi_and_healthz(api: Api) -> None:
    health = api.http.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}

    spec = api.http.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "/v1/stations/certificates" in paths
    assert "proofing_id" in spec.json()["components"]["schemas"]["IssuanceIn"]["properties"]
    for path in ("/v1/stations/proofings", "/v1/stations/pin-resets",
                 "/v1/stations/certificates/{serial}/delivery",
                 "/v1/stations/certificates/{serial}/abandonment"):
        assert "post" in paths[path], path
    assert "post" in paths["/v1/operators/certificates/{serial}/revocation"]


def test_lifespan_runs_with_the_given_services(api: Api) -> None:
    """Entering the app (as uvicorn does) runs the maintenance pass and still serves."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(api.services.settings, services=api.services)) as client:
        assert client.get("/healthz").status_code == 200
