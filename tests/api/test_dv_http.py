"""DV support measures over REST: a counter asks — on its own or with the registration — and a
supervisor, another person, decides; until then nothing about the resident changes, and every
refusal changes nothing. Both databases, the real HSM (the audit chain's MACs)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jpki.access.authz import Operation, authorize
from jpki.model import ClientRole
from tests.api.harness import ADULT, OTHER, Api, basic_auth

pytestmark = pytest.mark.hsm

RESIDENTS, PENDING = "/v1/operators/residents", "/v1/operators/dv-requests"


def asks(resident_id: str) -> str:
    return f"{RESIDENTS}/{resident_id}/dv-requests"


def decision(request_id: str) -> str:
    return f"{PENDING}/{request_id}/decision"


def kiyose(api: Api) -> dict[str, str]:
    """A counter clerk's client: an operator scoped to 清瀬市 (132217)."""
    return api.caller(ClientRole.OPERATOR, "municipality:132217").headers


def second_supervisor(api: Api) -> dict[str, str]:
    """Another national operator than ``api.op``: another person."""
    made = api.services.clients.create(authorize(api.operator, Operation.CLIENT_CREATE),
                                       name="second supervisor", role=ClientRole.OPERATOR,
                                       scopes=[])
    return basic_auth(made.client.client_id, made.client_secret)


def pending(api: Api) -> list[dict[str, Any]]:
    r = api.http.get(PENDING, headers=api.op)
    assert r.status_code == 200, r.text
    return list(r.json())


def resident(api: Api, resident_id: str) -> dict[str, Any]:
    r = api.http.get(f"{RESIDENTS}/{resident_id}", headers=api.op)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_registration_asks_and_a_second_person_decides(api: Api) -> None:
    clerk = kiyose(api)
    api.remember(ADULT)
    r = api.http.post(RESIDENTS, json={**ADULT, "dv_request": "stalking"}, headers=clerk)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert r.json()["dv_support"] is False  # asked, not decided
    (asked,) = pending(api)
    assert (asked["resident_id"], asked["turn_on"], asked["category"], asked["status"]) == \
        (rid, True, "stalking", "pending")
    assert asked["requested_by"].startswith("client:")
    actions = [x.action for x in api.audit_since(0) if x.subject == rid]
    assert actions == ["resident.registered", "dv.requested"]

    # The clerk may not decide (a supervisor's operation), and nothing changes.
    before = api.snapshot()
    api.problem(api.http.post(decision(asked["id"]), json={"approve": True}, headers=clerk),
                403, "auth.scope_missing")
    api.unchanged(before)

    # A national operator — another person — approves: the resident is under the measures.
    r = api.http.post(decision(asked["id"]), json={"approve": True}, headers=api.op)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    assert r.json()["decided_by"].startswith("client:")
    assert r.json()["decided_by"] != asked["requested_by"]
    assert resident(api, rid)["dv_support"] is True
    record = api.audit_since(0)[-1]
    assert record.action == "resident.dv_support"
    assert json.loads(record.payload) == {"on": True, "request": asked["id"],
                                          "category": "stalking",
                                          "requested_by": asked["requested_by"]}
    assert pending(api) == []
    # Decided once.
    before = api.snapshot()
    api.problem(api.http.post(decision(asked["id"]), json={"approve": False}, headers=api.op),
                409, "dv.request_decided")
    api.unchanged(before)


def test_lifting_takes_two_people_too_and_the_asker_cannot_decide(api: Api) -> None:
    rid = api.register(ADULT)
    r = api.http.post(asks(rid), json={"turn_on": True, "category": "dv"}, headers=api.op)
    assert r.status_code == 201, r.text
    own = r.json()["id"]
    # The same national operator asked: a second person must decide.
    before = api.snapshot()
    api.problem(api.http.post(decision(own), json={"approve": True}, headers=api.op), 403,
                "dv.second_person_required")
    api.unchanged(before)
    api.problem(api.http.post(decision(own), json={"approve": True}, headers=kiyose(api)), 403,
                "auth.scope_missing")
    supervisor = second_supervisor(api)
    assert api.http.post(decision(own), json={"approve": True},
                         headers=supervisor).status_code == 200
    assert resident(api, rid)["dv_support"] is True

    # Lifting: asked by the clerk, rejected by a supervisor — nothing changes.
    r = api.http.post(asks(rid), json={"turn_on": False, "category": "ended"},
                      headers=kiyose(api))
    assert r.status_code == 201, r.text
    assert api.http.post(decision(r.json()["id"]), json={"approve": False},
                         headers=api.op).json()["status"] == "rejected"
    assert resident(api, rid)["dv_support"] is True
    assert api.audit_since(0)[-1].action == "dv.rejected"


def test_refused_requests_change_nothing(api: Api) -> None:
    rid = api.register(ADULT)
    other_town = api.register(OTHER)  # 千代田区: not the clerk's
    clerk = kiyose(api)
    cases: list[tuple[str, dict[str, Any], dict[str, str], int, str]] = [
        (asks(other_town), {"turn_on": True, "category": "dv"}, clerk, 403,
         "auth.scope_missing"),
        (asks(rid), {"turn_on": True, "category": "ended"}, clerk, 400, "request.invalid"),
        (asks(rid), {"turn_on": False, "category": "ended"}, clerk, 400, "request.invalid"),
        (asks(rid), {"turn_on": True, "category": "DV"}, clerk, 422, "request.invalid"),
        (asks(rid), {"turn_on": "yes", "category": "dv"}, clerk, 422, "request.invalid"),
        (asks("0" * 32), {"turn_on": True, "category": "dv"}, clerk, 404, "resident.not_found"),
        (asks("xyz"), {"turn_on": True, "category": "dv"}, clerk, 422, "request.invalid"),
        (decision("0" * 32), {"approve": True}, api.op, 404, "not_found"),
        (decision("0" * 31 + "%00"), {"approve": True}, api.op, 422, "request.invalid"),
        (decision("0" * 32), {"approve": 1}, api.op, 422, "request.invalid"),
        (RESIDENTS, {**OTHER, "dv_request": "dv"}, clerk, 403, "auth.scope_missing"),
    ]
    for path, body, headers, status, code in cases:
        before = api.snapshot()
        api.problem(api.http.post(path, json=body, headers=headers), status, code)
        api.unchanged(before)
        assert pending(api) == [], path
    # One pending request per resident at a time.
    assert api.http.post(asks(rid), json={"turn_on": True, "category": "dv"},
                         headers=clerk).status_code == 201
    before = api.snapshot()
    api.problem(api.http.post(asks(rid), json={"turn_on": True, "category": "other"},
                              headers=clerk), 409, "dv.request_pending")
    api.unchanged(before)
    assert len(pending(api)) == 1
