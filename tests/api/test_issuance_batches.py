"""POST /v1/stations/certificate-batches: several residents' issuances in one request, through
the bulk path (jpki.issuance.service.issue_batch) — each order issued as a single request would
be, or refused with its own problem, leaving nothing behind."""

from __future__ import annotations

from typing import Any

from cryptography import x509

from api.schemas import MAX_BATCH_ORDERS
from jpki.model import ClientRole
from tests.api.harness import ADULT, CHILD, OTHER, Api

BATCHES = "/v1/stations/certificate-batches"


def _order(api: Api, resident: str, sign: bytes | None, auth: bytes | None) -> dict[str, Any]:
    body: dict[str, Any] = {"resident_id": resident, "proofing_id": api.proof(resident)}
    if sign is not None:
        body["sign_public_key"] = sign.decode("ascii")
    if auth is not None:
        body["auth_public_key"] = auth.decode("ascii")
    return body


def test_a_batch_issues_each_order_and_refuses_each_bad_one_alone(
        api: Api, subject_keys: list[bytes]) -> None:
    adult = api.register(ADULT)
    child = api.register(CHILD)
    other = api.register({**OTHER, "municipality_code": "132217"})
    orders = [
        _order(api, adult, subject_keys[0], subject_keys[1]),
        _order(api, child, subject_keys[2], None),          # under 15: no signing certificate
        _order(api, other, subject_keys[3], subject_keys[4]),
        {"resident_id": "0" * 32, "proofing_id": "0" * 32,  # nobody
         "auth_public_key": subject_keys[5].decode("ascii")},
    ]
    r = api.http.post(BATCHES, json={"orders": orders}, headers=api.station)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [item["status"] for item in results] == [201, 422, 201, 404]
    assert results[1]["problem"]["code"] == "policy.under_15"
    for item in (results[0], results[2]):
        issued = item["issued"]
        assert {c["kind"] for c in issued["certificates"]} == {"card_sign", "card_auth"}
        for cert in issued["certificates"]:
            shown = api.http.get(f"/v1/certificates/{cert['serial']}", headers=api.op)
            assert shown.status_code == 200 and shown.json()["status"] == "good"
            assert x509.load_pem_x509_certificate(cert["pem"].encode()).serial_number == \
                int(cert["serial"], 16)
    api.assert_no_personal_data(r.text, "the batch answer")
    # The refused orders left no certificate behind: four issued in all.
    with api.services.uow() as uow:
        assert uow.certificates.for_resident(child) == []
        assert len(uow.certificates.for_resident(adult)) == 2
        assert len(uow.certificates.for_resident(other)) == 2


def test_a_malformed_order_refuses_the_whole_batch(api: Api, subject_keys: list[bytes]) -> None:
    adult = api.register(ADULT)
    other = api.register({**OTHER, "municipality_code": "132217"})
    good = _order(api, adult, subject_keys[0], subject_keys[1])
    no_key = {"resident_id": other, "proofing_id": api.proof(other)}
    not_a_key = {**_order(api, other, subject_keys[2], None),
                 "auth_public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}
    before = api.snapshot()
    body = api.problem(api.http.post(BATCHES, json={"orders": [good, no_key]},
                                     headers=api.station), 400, "request.invalid")
    assert body["context"]["order"] == 1 and body["detail"].startswith("order 1: ")
    body = api.problem(api.http.post(BATCHES, json={"orders": [good, not_a_key]},
                                     headers=api.station), 400, "public_key.invalid")
    assert body["context"]["order"] == 1
    api.unchanged(before)


def test_a_batch_needs_an_issuer_and_bounds(api: Api, subject_keys: list[bytes]) -> None:
    adult = api.register(ADULT)
    order = _order(api, adult, subject_keys[0], subject_keys[1])
    relying_party = api.caller(ClientRole.RP, "status").headers
    before = api.snapshot()
    api.problem(api.http.post(BATCHES, json={"orders": [order]}, headers=relying_party),
                403, "auth.role_forbidden")
    api.problem(api.http.post(BATCHES, json={"orders": []}, headers=api.station),
                422, "request.invalid")
    api.problem(api.http.post(BATCHES, json={"orders": [order] * (MAX_BATCH_ORDERS + 1)},
                              headers=api.station), 422, "request.invalid")
    api.unchanged(before)
