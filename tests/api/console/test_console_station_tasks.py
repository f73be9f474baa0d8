"""The counter's work at a station in the console (api.console.stations): the clerk queues a task
for a station of the resident's municipality and follows its steps as the station reports them;
refused for a forged form, another municipality's clerk and a role without the operation.

The station's side runs through the same service a station's REST calls reach
(jpki.registry.station_tasks); tests/devices/station/test_station_tasks.py drives a card."""

from __future__ import annotations

import re
from datetime import date

import pytest

from api.console.pages import CSP
from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import ConsoleRole
from jpki.access.principals import Principal, PrincipalKind
from jpki.model import ClientRole
from jpki.registry.station_tasks import Report
from tests.api.console.test_console_http import LOCAL, Console, console

pytestmark = pytest.mark.hsm
__all__ = ["console"]  # the fixture, shared

TASK = re.compile(r"^/console/station-tasks/([0-9a-f]{32})$")
REFRESH = '<meta http-equiv="refresh" content="2">'


def station(console: Console, name: str, municipality: str) -> Principal:
    made = console.services.clients.create(
        authorize(LOCAL, Operation.CLIENT_CREATE), name=name, role=ClientRole.STATION,
        scopes=[f"municipality:{municipality}"])
    return Principal.client(made.client.client_id, ClientRole.STATION,
                            frozenset(made.client.scope_set))


def resident(console: Console) -> str:
    return console.services.residents.register(
        authorize(LOCAL, Operation.RESIDENT_REGISTER), name="窓口 花子",
        birth_date=date(1990, 1, 2), sex=2, address="東京都清瀬市中里一丁目",
        municipality_code="132217").id


def form(console: Console, rid: str, station_id: str, **extra: str) -> dict[str, str]:
    return {"csrf": console.session_csrf(), "resident_id": rid, "station": station_id,
            "kind": "issue", "doc.drivers_license": "on", "doc.passport": "on", **extra}


def test_a_clerk_queues_work_for_a_station_and_follows_its_steps(console: Console) -> None:
    kiyose = station(console, "Kiyose counter 1", "132217")
    chiyoda = station(console, "Chiyoda counter", "131016")
    rid = resident(console)
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, "132217"))
    assert 'id="station-task"' in console.http.get(f"/console/residents?id={rid}").text

    new = console.http.get(f"/console/station-tasks/new?resident={rid}")
    assert new.status_code == 200 and new.headers["content-security-policy"] == CSP
    kiyose_id = kiyose.actor.removeprefix("client:")
    assert kiyose_id in new.text and chiyoda.actor.removeprefix("client:") not in new.text
    queued = console.http.post("/console/station-tasks", data=form(console, rid, kiyose_id))
    assert queued.status_code == 303, queued.text
    found = TASK.match(queued.headers["location"])
    assert found is not None
    task_id = found.group(1)
    page = console.http.get(queued.headers["location"]).text
    assert 'data-status="queued"' in page and REFRESH in page
    assert page.count('data-state="todo"') == 9

    # The station claims it and reports: the page shows where it is, and keeps reloading.
    work = authorize(kiyose, Operation.STATION_TASK_WORK)
    tasks = console.services.station_tasks
    claimed = tasks.claim(work)
    assert claimed is not None and claimed.id == task_id
    for step in ("pin_format", "proofing", "issuer_auth", "keygen"):
        tasks.report(work, task_id, Report(step))
    page = console.http.get(f"/console/station-tasks/{task_id}").text
    assert 'data-status="claimed"' in page and REFRESH in page
    states = dict(re.findall(r'data-step="(\w+)" data-state="(\w+)"', page))
    assert [states[s] for s in ("pin_format", "proofing", "issuer_auth", "keygen", "issue")] \
        == ["done", "done", "done", "current", "todo"]
    tasks.report(work, task_id, Report("delivery", "done",
                                       serials={"card_auth": "1a2b", "card_sign": "3c4d"}))
    page = console.http.get(f"/console/station-tasks/{task_id}").text
    assert 'data-status="done"' in page and REFRESH not in page  # ended: no more reloads
    assert page.count('data-state="done"') == 9 and "1a2b" in page and "3c4d" in page
    assert "窓口 花子" not in page  # the task page shows no basic 4 information


def test_refusals_change_nothing(console: Console) -> None:
    kiyose = station(console, "Kiyose counter 1", "132217")
    kiyose_id = kiyose.actor.removeprefix("client:")
    rid = resident(console)
    console.sign_in(console.account("kiyose", ConsoleRole.CLERK, "132217"))
    tasks = console.services.station_tasks
    read = authorize(Principal(actor="client:national", kind=PrincipalKind.OPERATOR),
                     Operation.STATION_TASK_READ)

    def none_open() -> bool:
        return tasks.of_resident(read, rid) == []

    forged = console.http.post("/console/station-tasks",
                               data={**form(console, rid, kiyose_id), "csrf": "forged"})
    assert forged.status_code == 403 and none_open()
    no_docs = {k: v for k, v in form(console, rid, kiyose_id).items() if not k.startswith("doc.")}
    assert console.http.post("/console/station-tasks", data=no_docs).status_code == 400
    weak = {**form(console, rid, kiyose_id), "doc.passport": "", "doc.drivers_license": "",
            "doc.health_insurance_card": "on"}  # one 乙 document: no pattern
    assert console.http.post("/console/station-tasks", data=weak).status_code == 422
    other = station(console, "Chiyoda counter", "131016").actor.removeprefix("client:")
    assert console.http.post("/console/station-tasks",
                             data=form(console, rid, other)).status_code == 400
    assert none_open()

    queued = console.http.post("/console/station-tasks", data=form(console, rid, kiyose_id))
    task_url = queued.headers["location"]
    assert console.http.post("/console/station-tasks",  # one open task per resident
                             data=form(console, rid, kiyose_id)).status_code == 409

    # Another municipality's clerk, and an agent, may not see it.
    console.http.post("/console/logout", data={"csrf": console.session_csrf()})
    console.sign_in(console.account("chiyoda", ConsoleRole.CLERK, "131016"))
    assert console.http.get(task_url).status_code == 403
    console.http.post("/console/logout", data={"csrf": console.session_csrf()})
    console.sign_in(console.account("agent", ConsoleRole.AGENT))
    assert console.http.get(task_url).status_code == 403

    # The clerk cancels it while no station has claimed it; then the station finds nothing.
    console.http.post("/console/logout", data={"csrf": console.session_csrf()})
    console.sign_in(console.account("kiyose2", ConsoleRole.CLERK, "132217"))
    done = console.http.post(task_url + "/cancel", data={"csrf": console.session_csrf()})
    assert done.status_code == 303
    assert 'data-status="cancelled"' in console.http.get(task_url).text
    assert tasks.claim(authorize(kiyose, Operation.STATION_TASK_WORK)) is None
