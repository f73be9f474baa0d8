"""GET /v1/operators/notices/expiry: the expiry notices' list over HTTP — CSV and JSON, the
municipality's own and national operators only, strict parameters with precise problems, each
export audited with counts only, and no personal data in a refusal or a log line (the ``api``
fixture checks every log record)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Any

import pytest

from jpki.access.authz import Operation, authorize
from jpki.issuance.service import KeyRequest
from jpki.model import CertKind, ClientRole
from tests.api.harness import OTHER, Api
from tests.phone_kit import spki

pytestmark = pytest.mark.hsm

PATH = "/v1/operators/notices/expiry"
WINDOW = "from=2031-01-01&to=2031-02-01"
KIYOSE, CHIYODA = "132217", "131016"
# Born on 2 January: certificates issued on 2026-11-27 end on 2031-01-02 (the 5th birthday).
NEAR = {"name": "期限 近子", "birth_date": "1990-01-02", "sex": 2,
        "address": "東京都清瀬市中里一丁目２番３号 通知荘１０１", "municipality_code": KIYOSE}
PROTECTED = {**NEAR, "name": "保護 守", "address": "東京都清瀬市秘密町三丁目 避難所"}
ELSEWHERE = {**OTHER, "birth_date": "1990-01-02"}


@pytest.fixture
def holders(api: Api) -> dict[str, str]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    made = {}
    issue = authorize(api.operator, Operation.CERTIFICATE_ISSUE)
    for label, person, dv in (("near", NEAR, False), ("protected", PROTECTED, True),
                              ("elsewhere", ELSEWHERE, False)):
        api.remember(person)
        rid = api.services.residents.register(
            authorize(api.operator, Operation.RESIDENT_REGISTER), name=person["name"],
            birth_date=date.fromisoformat(person["birth_date"]), sex=person["sex"],
            address=person["address"], municipality_code=person["municipality_code"],
            dv_support=dv).id
        api.services.issuance.issue(issue, rid, [
            KeyRequest(kind, spki(rsa.generate_private_key(65537, 2048)))
            for kind in (CertKind.CARD_AUTH, CertKind.CARD_SIGN)])
        made[label] = rid
    return made


def exports(api: Api) -> list[dict[str, Any]]:
    with api.services.uow() as uow:
        return [{"actor": r.actor, "subject": r.subject, **json.loads(r.payload)}
                for r in uow.audit.iterate() if r.action == "notices.expiry_exported"]


def test_a_national_operator_gets_csv_and_json(api: Api, holders: dict[str, str]) -> None:
    r = api.http.get(f"{PATH}?municipality={KIYOSE}&{WINDOW}", headers=api.op)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-disposition"] == \
        'attachment; filename="expiry-notices-132217-2031-01-01-2031-02-01.csv"'
    assert r.headers["jpki-notice-count"] == "2"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted(row["resident_id"] for row in rows) == sorted(
        [holders["near"], holders["protected"]])
    by_id = {row["resident_id"]: row for row in rows}
    near = by_id[holders["near"]]
    assert (near["expires_on"], near["certificates"], near["address_withheld"]) == (
        "2031-01-02", "sign auth", "false")
    assert near["name"].replace("\u3000", " ") == NEAR["name"]
    # A national operator is not the resident's counter: the protected address is withheld.
    assert (by_id[holders["protected"]]["address"],
            by_id[holders["protected"]]["address_withheld"]) == ("", "true")

    r = api.http.get(f"{PATH}?municipality={KIYOSE}&{WINDOW}&format=json", headers=api.op)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert (doc["municipality"], doc["from"], doc["to"], doc["count"]) == (
        KIYOSE, "2031-01-01", "2031-02-01", 2)
    assert [n["resident_id"] for n in doc["notices"]] == [row["resident_id"] for row in rows]

    operator = api.caller(ClientRole.OPERATOR)
    assert [(e["subject"], e["format"], e["count"]) for e in exports(api)] == [
        (KIYOSE, "csv", 2), (KIYOSE, "json", 2)]
    assert {e["actor"] for e in exports(api)} == {f"client:{operator.client_id}"}
    for record in exports(api):
        api.assert_no_personal_data(json.dumps(record, ensure_ascii=False), "the audit log")


def test_the_municipality_s_own_operator_gets_its_list_and_no_other(
        api: Api, holders: dict[str, str]) -> None:
    kiyose = api.caller(ClientRole.OPERATOR, f"municipality:{KIYOSE}").headers
    r = api.http.get(f"{PATH}?municipality={KIYOSE}&{WINDOW}&format=json", headers=kiyose)
    assert r.status_code == 200, r.text
    protected = next(n for n in r.json()["notices"] if n["resident_id"] == holders["protected"])
    assert protected["address_withheld"] is False and protected["address"]

    before = api.snapshot()
    body = api.problem(api.http.get(f"{PATH}?municipality={CHIYODA}&{WINDOW}", headers=kiyose),
                       403, "auth.scope_missing")
    assert body["context"] == {"scope": f"municipality:{CHIYODA}"}
    assert api.snapshot() == before  # refused before anything was read or audited


def test_other_roles_are_refused(api: Api, holders: dict[str, str]) -> None:
    url = f"{PATH}?municipality={KIYOSE}&{WINDOW}"
    callers = [api.caller(role) for role in (ClientRole.STATION, ClientRole.CALLCENTER,
                                             ClientRole.RP)]
    before = api.snapshot()
    api.problem(api.http.get(url), 401, "auth.required")
    for caller in callers:
        api.problem(api.http.get(url, headers=caller.headers), 403, "auth.role_forbidden")
    assert api.snapshot() == before


@pytest.mark.parametrize(("query", "status", "code"), [
    ("municipality=132217&from=2031-02-01&to=2031-02-01", 400, "notices.window_invalid"),
    ("municipality=132217&from=2031-02-01&to=2031-01-01", 400, "notices.window_invalid"),
    ("municipality=132217&from=2031-01-01&to=2032-01-03", 400, "notices.window_invalid"),
    ("municipality=132218&" + WINDOW, 400, "municipality.invalid"),
    ("municipality=139998&" + WINDOW, 404, "municipality.not_found"),
    ("municipality=13221&" + WINDOW, 422, "request.invalid"),
    ("municipality=132217&from=2031-13-01&to=2031-02-01", 422, "request.invalid"),
    ("municipality=132217&from=2031-01-01", 422, "request.invalid"),
    ("municipality=132217&" + WINDOW + "&format=xml", 422, "request.invalid"),
    ("municipality=132217&" + WINDOW + "&limit=10", 400, "request.invalid"),
    ("municipality=132217&" + WINDOW + "&from=2030-01-01", 400, "request.invalid"),
])
def test_bad_requests_get_a_precise_problem_and_change_nothing(
        api: Api, holders: dict[str, str], query: str, status: int, code: str) -> None:
    headers = api.op
    before = api.snapshot()
    api.problem(api.http.get(f"{PATH}?{query}", headers=headers), status, code)
    assert api.snapshot() == before
