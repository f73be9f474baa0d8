"""A counter's task, end to end over HTTP: a clerk queues it (the operator's REST API), the station
claims it, personalises the card (the emulator, in process) with the holder typing the PINs at
the station, and reports each step — and a failed task ends with its problem code, what was
issued revoked as for any enrolment that stops."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devices.card.client import JpkiCard
from devices.card.jpki_ap import Pin
from devices.station.ca_client import CaClient
from devices.station.tasks import STEP_CODES, TaskRunner
from devices.station.workflow import CARD_AUTH, CARD_SIGN, EnrolmentStation
from jpki.access.authz import Operation, authorize
from jpki.model import ClientRole
from tests.devices.station.test_enrolment import (
    CA_OPERATOR,
    CREATE_CLIENT,
    IN_PERSON_B,
    PullableTransport,
    card,
    issuer_key,
    resident,
    status,
)

pytestmark = pytest.mark.hsm
__all__ = ["card", "issuer_key"]  # the fixtures, shared

TASKS = "/v1/operators/station-tasks"
READ = authorize(CA_OPERATOR, Operation.CERTIFICATE_READ)


def client(served: Any, name: str, role: ClientRole, scopes: list[str]) -> tuple[str, str]:
    made = served.services.clients.create(CREATE_CLIENT, name=name, role=role, scopes=scopes)
    return made.client.client_id, made.client_secret


def queue(served: Any, clerk: httpx.Client, rid: str, station_id: str) -> dict[str, Any]:
    r = clerk.post(TASKS, json={"resident_id": rid, "station": station_id, "kind": "issue",
                                "proofing": IN_PERSON_B})
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.fixture
def clerk(served: Any) -> Any:
    cid, secret = client(served, "Kiyose clerk", ClientRole.OPERATOR, ["municipality:132217"])
    with httpx.Client(base_url=served.url, auth=(cid, secret), timeout=30) as http:
        yield http


def test_a_queued_task_is_run_by_its_station_and_followed_step_by_step(
        served: Any, clerk: httpx.Client, card: Any, issuer_key: Any) -> None:
    sid, secret = client(served, "Kiyose counter", ClientRole.STATION, ["municipality:132217"])
    other, other_secret = client(served, "Other counter", ClientRole.STATION, [])
    rid = resident(served)
    task = queue(served, clerk, rid, sid)
    assert (task["status"], task["step"], task["kind"]) == ("queued", None, "issue")

    # Another station finds nothing to do.
    with CaClient(served.url, other, other_secret) as ca:
        assert ca.claim_task() is None

    seen: list[str] = []
    pins_asked: list[bool] = []
    with CaClient(served.url, sid, secret) as ca:
        original = ca.report_task

        def watched(task_id: str, step: str, **kw: Any) -> dict[str, Any]:
            answer = original(task_id, step, **kw)
            # What the clerk sees after each report: the step just reported.
            now = clerk.get(f"{TASKS}/{task_id}").json()
            seen.append(f"{now['status']}:{now['step']}")
            return answer

        ca.report_task = watched  # type: ignore[method-assign]

        def pins(signing: bool) -> tuple[str, str | None]:
            pins_asked.append(signing)
            return "1234", "ABC123"

        station = EnrolmentStation(ca, JpkiCard(PullableTransport(card)), issuer_key)
        runner = TaskRunner(ca, station, pins)
        claimed = runner.claim()
        assert claimed is not None and claimed["id"] == task["id"]
        assert claimed["proofing"]["applicant_documents"][0]["type"] == "drivers_license"
        outcome = runner.run(claimed)
        assert ca.claim_task() is None  # nothing else queued
    assert outcome.status == "done" and set(outcome.serials) == {CARD_AUTH, CARD_SIGN}
    assert pins_asked == [True]  # an adult: both PINs, typed at the station
    codes = list(dict.fromkeys(STEP_CODES[n] for n in STEP_CODES))
    assert seen == [f"claimed:{c}" for c in codes] + ["done:delivery"]
    final = clerk.get(f"{TASKS}/{task['id']}").json()
    assert final["serials"] == outcome.serials and final["error_code"] is None
    for serial in outcome.serials.values():
        assert status(served, serial)[0] == "good"

    # Later the holder forgets the signing password: the clerk queues a reset, the station runs
    # it with the new one typed at the station, and the card takes it.
    r = clerk.post(TASKS, json={"resident_id": rid, "station": sid, "kind": "pin_sign",
                                "proofing": IN_PERSON_B})
    assert r.status_code == 201, r.text
    with CaClient(served.url, sid, secret) as ca:
        station = EnrolmentStation(ca, JpkiCard(PullableTransport(card)), issuer_key)
        runner = TaskRunner(ca, station, pins, lambda which: "NEWPASS9" if which == "sign"
                            else "0000")
        reset = runner.claim()
        assert reset is not None and reset["kind"] == "pin_sign"
        done = runner.run(reset)
        assert (done.status, done.serials) == ("done", {})
        station.card.select_jpki_ap()
        station.card.verify_pin(Pin.SIGN, "NEWPASS9")  # raises WrongPin otherwise
    final = clerk.get(f"{TASKS}/{r.json()['id']}").json()
    assert (final["status"], final["step"], final["serials"]) == ("done", "verify", None)


def test_a_task_that_stops_reports_its_code_and_what_was_issued_is_revoked(
        served: Any, clerk: httpx.Client, card: Any, issuer_key: Any) -> None:
    sid, secret = client(served, "Kiyose counter", ClientRole.STATION, ["municipality:132217"])
    rid = resident(served)
    task = queue(served, clerk, rid, sid)
    with CaClient(served.url, sid, secret) as ca:
        # The card is pulled out at the first write: after the CA issued.
        station = EnrolmentStation(ca, JpkiCard(PullableTransport(card, pull_at_write=1)),
                                   issuer_key)
        runner = TaskRunner(ca, station, lambda signing: ("1234", "ABC123"))
        claimed = runner.claim()
        assert claimed is not None
        outcome = runner.run(claimed)
    assert outcome.status == "failed" and outcome.code == "card.removed"
    final = clerk.get(f"{TASKS}/{task['id']}").json()
    assert (final["status"], final["step"], final["error_code"]) == \
        ("failed", "write", "card.removed")
    assert final["serials"] is None
    # What the CA issued before the card was pulled is revoked, as for any enrolment that stops.
    issued = [c for c in served.services.certificates.of_resident(READ, rid)]
    assert issued and all((c.status, c.revocation_reason) == ("revoked", "unspecified")
                          for c in issued)
    # A task that has ended takes no more reports.
    with CaClient(served.url, sid, secret) as ca:
        r = httpx.post(f"{served.url}/v1/stations/tasks/{task['id']}/reports",
                       json={"step": "verify"}, auth=(sid, secret))
        assert r.status_code == 409 and r.json()["code"] == "station_task.state"
        assert ca.claim_task() is None
