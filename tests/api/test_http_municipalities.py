"""The municipality registry over HTTP (/v1/operators/municipalities, api.routers.municipalities):
national operators add, rename and merge; a municipality's operators and other roles are
refused; bad input gets a precise problem and changes nothing; and a fresh shard's CRL URL
answers a valid CRL the moment a relying party asks. Both databases, the real HSM."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from cryptography import x509

from jpki.access.authz import Operation, authorize
from jpki.issuance.service import KeyRequest
from jpki.model import CaKind, CertKind, ClientRole
from jpki.revocation.crls import FULL
from tests.api.harness import Api

pytestmark = pytest.mark.hsm

BASE = "/v1/operators/municipalities"
NEW = {"code": "139998", "name_ja": "新清瀬市", "name_kana": "しんきよせし"}


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def count(api: Api) -> int:
    r = api.http.get(BASE, headers=api.op)
    assert r.status_code == 200
    return len(r.json())


def test_add_rename_merge_and_read_back(api: Api) -> None:
    r = api.http.post(BASE, json=NEW, headers=api.op)
    assert r.status_code == 201, r.text
    added = r.json()
    assert (added["name_romaji"], added["shard"], added["prefecture"]) == (
        "Shinkiyose-shi", "139998", "Tokyo-to")
    assert added["shards"][0]["crl_url"].endswith("/crl/sign/g01/139998.crl")
    r = api.http.post(f"{BASE}/139998/rename", json={"name_romaji": "Shin-Kiyose-shi"},
                      headers=api.op)
    assert r.status_code == 200, r.text
    assert (r.json()["previous_shard"], r.json()["shard"]) == ("139998", "139998-2")
    r = api.http.post(f"{BASE}/139998/merge", json={"into": "132217"}, headers=api.op)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["merged"]["status"] == "merged" and body["merged"]["merged_into"] == "132217"
    assert body["closed_shard"] == "139998-2" and body["residents_moved"] == 0
    one = api.http.get(f"{BASE}/139998", headers=api.op).json()
    assert [(s["name"], s["closed_at"] is not None) for s in one["shards"]] == [
        ("139998", True), ("139998-2", True)]
    assert one["residents"] == 0
    assert count(api) == 72


@pytest.mark.parametrize(("body", "status", "code"), [
    ({**NEW, "code": "139997"}, 400, "municipality.invalid"),  # check digit
    ({**NEW, "code": "132217"}, 409, "municipality.exists"),
    ({**NEW, "name_kana": None, "name_romaji": "Kiyose-shi"}, 409,
     "municipality.crl_name_taken"),
    ({**NEW, "name_kana": "シンキヨセシ"}, 400, "request.invalid"),  # katakana
    ({**NEW, "name_kana": None}, 400, "request.invalid"),  # no romaji and nothing to derive it
    ({**NEW, "extra": 1}, 422, "request.invalid"),  # strict: unknown fields
    ({**NEW, "code": 139998}, 422, "request.invalid"),  # strict: no coercion
])
def test_bad_additions_get_a_precise_problem_and_change_nothing(
        api: Api, body: dict[str, Any], status: int, code: str) -> None:
    problem(api.http.post(BASE, json=body, headers=api.op), status, code)
    assert count(api) == 71
    with api.services.uow() as uow:
        assert [r for r in uow.audit.iterate() if r.action.startswith("municipality.")] == []


def test_bad_renames_and_mergers(api: Api) -> None:
    problem(api.http.post(f"{BASE}/132217/rename", json={}, headers=api.op), 400,
            "request.invalid")
    problem(api.http.post(f"{BASE}/132210/rename", json={"name_romaji": "X-shi"},
                          headers=api.op), 400, "municipality.invalid")
    problem(api.http.post(f"{BASE}/139998/rename", json={"name_romaji": "X-shi"},
                          headers=api.op), 404, "municipality.not_found")
    problem(api.http.post(f"{BASE}/132217/merge", json={"into": "132217"}, headers=api.op),
            400, "request.invalid")
    assert api.http.post(f"{BASE}/132217/merge", json={"into": "132136"},
                         headers=api.op).status_code == 200
    problem(api.http.post(f"{BASE}/132217/merge", json={"into": "131016"}, headers=api.op),
            409, "municipality.merged")
    # A resident can no longer be registered in the merged municipality.
    problem(api.http.post("/v1/operators/residents", json={
        "name": "山田 太郎", "birth_date": "1990-01-02", "sex": 1,
        "address": "東京都清瀬市中里一丁目２番３号", "municipality_code": "132217"},
        headers=api.op), 409, "municipality.merged")


def test_only_national_operators_change_the_registry(api: Api) -> None:
    local = api.caller(ClientRole.OPERATOR, "municipality:132217").headers
    assert api.http.get(BASE, headers=local).status_code == 200  # the list is no one's data
    problem(api.http.post(BASE, json=NEW, headers=local), 403, "auth.scope_missing")
    problem(api.http.post(f"{BASE}/132217/rename", json={"name_romaji": "X-shi"},
                          headers=local), 403, "auth.scope_missing")
    for role in (ClientRole.STATION, ClientRole.CALLCENTER):
        problem(api.http.post(BASE, json=NEW, headers=api.caller(role).headers), 403,
                "auth.role_forbidden")
    assert api.http.post(BASE, json=NEW).status_code == 401
    assert count(api) == 71


def test_a_fresh_shards_crl_url_answers_a_valid_crl(api: Api, subject_keys: list[bytes]) -> None:
    """No CRL file exists for a shard nothing was issued under (jpki.revocation.crls); the
    first request of its URL publishes one, whose IDP is the shard's distribution point."""
    assert api.http.post(BASE, json=NEW, headers=api.op).status_code == 201
    resident = api.services.residents.register(
        authorize(api.operator, Operation.RESIDENT_REGISTER), name="山田 太郎",
        birth_date=date(1990, 1, 2), sex=1,
        address="東京都新清瀬市一丁目", municipality_code="139998").id
    (issued,) = api.services.issuance.issue(
        authorize(api.operator, Operation.CERTIFICATE_ISSUE), resident,
        [KeyRequest(CertKind.CARD_SIGN, subject_keys[0])])
    cert = x509.load_der_x509_certificate(issued.der)
    (point,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    url = point.full_name[1].value  # type: ignore[index]
    scope = api.services.crls.scope(CaKind.SIGN, 1, "139998")
    assert api.services.crls.latest(scope, FULL) is None
    for path in (url, url.replace(".crl", "-delta.crl")):
        r = api.http.get(path[path.index("/crl/"):])
        assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl"
        crl = x509.load_der_x509_crl(r.content)
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
        assert list(idp.full_name or []) == list(point.full_name or [])
        assert crl.is_signature_valid(_issuer_key(api, cert))
    assert api.http.get("/crl/sign/g01/139998-9.crl").status_code == 404  # no such shard


def _issuer_key(api: Api, cert: x509.Certificate) -> Any:
    with api.services.uow() as uow:
        for gen in uow.cas.generations():
            root = x509.load_der_x509_certificate(gen.certificate_der)
            if root.subject == cert.issuer:
                return root.public_key()
    raise AssertionError("no issuer")
