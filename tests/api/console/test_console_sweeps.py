"""The supervisor's page of the mobile sweep's runs (api.console.sweeps): what
``GET /v1/operators/mobile/sweeps`` says, for national supervisors only."""

from __future__ import annotations

import pytest

from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import ConsoleRole
from jpki.access.principals import Principal
from tests.api.console.test_console_http import Console, console

pytestmark = pytest.mark.hsm
__all__ = ["console"]  # the fixture, shared


def test_a_supervisor_sees_each_run_and_its_items_and_nobody_else_does(
        console: Console) -> None:
    sweep = console.services.mobile_sweep
    done = sweep.run(authorize(Principal.system_job("maintenance"), Operation.MOBILE_SWEEP))
    console.sign_in(console.account("boss", ConsoleRole.SUPERVISOR))
    assert 'id="menu-sweeps"' in console.http.get("/console/").text
    page = console.http.get("/console/mobile-sweeps")
    assert page.status_code == 200
    assert f'data-sweep="{done.id}"' in page.text and "完了" in page.text
    detail = console.http.get(f"/console/mobile-sweeps?id={done.id}")
    assert detail.status_code == 200 and 'id="detail"' in detail.text
    assert console.http.get("/console/mobile-sweeps?id=nope").status_code == 404
    for role, municipality in ((ConsoleRole.CLERK, "132217"), (ConsoleRole.AGENT, None)):
        console.http.post("/console/logout", data={"csrf": console.session_csrf()})
        console.sign_in(console.account(f"x{role.value}", role, municipality))
        assert console.http.get("/console/mobile-sweeps").status_code == 403
