"""Station tasks over REST: what a clerk may queue, what a station may claim and report — each
refusal precise, audited nowhere and changing nothing. Both databases."""

from __future__ import annotations

from typing import Any

import pytest

from jpki.access.authz import Operation, authorize
from jpki.model import ClientRole, ClientStatus
from tests.api.harness import ADULT, IN_PERSON_B, OTHER, Api, basic_auth

pytestmark = pytest.mark.hsm

TASKS, CLAIMS = "/v1/operators/station-tasks", "/v1/stations/task-claims"


def reports(task_id: str) -> str:
    return f"/v1/stations/tasks/{task_id}/reports"


def station(api: Api, name: str, scopes: list[str]) -> tuple[str, dict[str, str]]:
    made = api.services.clients.create(authorize(api.operator, Operation.CLIENT_CREATE),
                                       name=name, role=ClientRole.STATION, scopes=scopes)
    return made.client.client_id, basic_auth(made.client.client_id, made.client_secret)


def test_queue_claim_report_and_their_refusals(api: Api) -> None:
    rid, other_town = api.register(ADULT), api.register(OTHER)
    sid, headers = station(api, "Kiyose counter", ["municipality:132217"])
    _, stranger = station(api, "Another counter", [])
    clerk = api.caller(ClientRole.OPERATOR, "municipality:132217").headers

    def body(**kw: Any) -> dict[str, Any]:
        return {"resident_id": rid, "station": sid, "kind": "issue", "proofing": IN_PERSON_B,
                **kw}

    insufficient = {"presence": "in_person",
                    "applicant_documents": [{"type": "health_insurance_card"}]}
    suspended, _ = station(api, "Closed counter", ["municipality:132217"])
    api.services.clients.set_status(authorize(api.operator, Operation.CLIENT_SET_STATUS),
                                    suspended, ClientStatus.SUSPENDED)
    refusals: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        (body(resident_id=other_town), clerk, 403, "auth.scope_missing"),
        (body(station="jpki_" + "0" * 24), clerk, 400, "station_task.station_unavailable"),
        (body(station=suspended), clerk, 400, "station_task.station_unavailable"),
        (body(proofing=insufficient), clerk, 422, "proofing.insufficient"),
        (body(kind="reissue"), clerk, 422, "request.invalid"),
        (body(), headers, 403, "auth.role_forbidden"),  # a station queues nothing
    ]
    for sent, who, status, code in refusals:
        before = api.snapshot()
        api.problem(api.http.post(TASKS, json=sent, headers=who), status, code)
        api.unchanged(before)
    other_station_town, _ = station(api, "Chiyoda counter", ["municipality:131016"])
    api.problem(api.http.post(TASKS, json=body(station=other_station_town), headers=clerk),
                400, "station_task.station_unavailable")

    r = api.http.post(TASKS, json=body(), headers=clerk)
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["proofing"]["applicant_documents"][0]["type"] == "drivers_license"
    api.problem(api.http.post(TASKS, json=body(), headers=clerk), 409, "station_task.open")
    assert api.http.post(CLAIMS, headers=stranger).status_code == 204
    claimed = api.http.post(CLAIMS, headers=headers)
    assert claimed.status_code == 200 and claimed.json()["status"] == "claimed"
    api.problem(api.http.post(f"{TASKS}/{task['id']}/cancellation", headers=clerk), 409,
                "station_task.state")

    bad_reports: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        ({"step": "keygen"}, stranger, 404, "station_task.not_found"),
        ({"step": "dance"}, headers, 422, "request.invalid"),
        ({"step": "delivery", "outcome": "done"}, headers, 400, "request.invalid"),
        ({"step": "keygen", "serials": {"card_auth": "1a"}}, headers, 400, "request.invalid"),
        ({"step": "write", "outcome": "failed"}, headers, 400, "request.invalid"),
        ({"step": "write", "outcome": "failed", "error_code": "Card Removed!"}, headers, 422,
         "request.invalid"),
        ({"step": "delivery", "outcome": "done", "serials": {"card_auth": "XYZ"}}, headers, 422,
         "request.invalid"),
    ]
    for sent, who, status, code in bad_reports:
        api.problem(api.http.post(reports(task["id"]), json=sent, headers=who), status, code)
    view = api.http.get(f"{TASKS}/{task['id']}", headers=clerk).json()
    assert (view["status"], view["step"]) == ("claimed", "claimed")  # nothing taken

    done = api.http.post(reports(task["id"]), headers=headers, json={
        "step": "delivery", "outcome": "done", "serials": {"card_auth": "1a", "card_sign": "2b"}})
    assert done.status_code == 200 and done.json()["status"] == "done"
    api.problem(api.http.post(reports(task["id"]), json={"step": "verify"}, headers=headers),
                409, "station_task.state")
    audited = [(r.action, r.subject) for r in api.audit_since(0)
               if r.action.startswith("station_task.")]
    assert audited == [("station_task.created", rid), ("station_task.claimed", rid),
                       ("station_task.done", rid)]


def test_a_pin_reset_task_ends_without_serials(api: Api) -> None:
    rid = api.register(ADULT)
    sid, headers = station(api, "Kiyose counter", ["municipality:132217"])
    clerk = api.caller(ClientRole.OPERATOR, "municipality:132217").headers
    r = api.http.post(TASKS, json={"resident_id": rid, "station": sid, "kind": "pin_auth",
                                   "proofing": IN_PERSON_B}, headers=clerk)
    assert r.status_code == 201, r.text
    task = api.http.post(CLAIMS, headers=headers).json()
    assert task["kind"] == "pin_auth"
    api.problem(api.http.post(reports(task["id"]), headers=headers, json={
        "step": "verify", "outcome": "done", "serials": {"card_auth": "1a"}}), 400,
        "request.invalid")
    done = api.http.post(reports(task["id"]), headers=headers,
                         json={"step": "verify", "outcome": "done"})
    assert done.status_code == 200 and done.json()["status"] == "done"
    assert done.json()["serials"] is None
