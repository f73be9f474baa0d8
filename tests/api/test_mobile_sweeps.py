"""The layered measures over smartphones as a maintenance job (api.app.maintenance,
jpki.mobile.sweep): run by the loop at most once per interval, whichever process restarts; each
run's report served to national operators at /v1/operators/mobile/sweeps — device ids and
serials, no personal data — and refused to everyone else."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from api.app import maintenance
from jpki.model import ClientRole
from tests.api.harness import Api
from tests.holder_kit import new_holder

pytestmark = pytest.mark.hsm

PATH = "/v1/operators/mobile/sweeps"
NAME, ADDRESS = "端末 静香", "東京都清瀬市中里一丁目２番３号 無音荘２０２"


@pytest.fixture
def silent_phone(api: Api) -> Any:
    api.remember({"name": NAME, "address": ADDRESS, "birth_date": "1990-01-02"})
    pool = [rsa.generate_private_key(65537, 2048) for _ in range(4)]
    holder = new_holder(api.services, pool, name=NAME, address=ADDRESS)
    holder.enrol_phone()
    return holder


def sweeps(api: Api, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    r = api.http.get(PATH, headers=headers or api.op)
    assert r.status_code == 200, r.text
    return list(r.json()["sweeps"])


def test_the_loop_runs_the_sweep_once_per_interval_and_serves_its_reports(
        api: Api, clock: Any, silent_phone: Any) -> None:
    maintenance(api.services)
    (first,) = sweeps(api)
    assert (first["outcome"], first["counts"], first["actor"]) == (
        "ok", {"revoked": 0, "flagged": 0, "held": 0}, "service:maintenance")
    assert (first["flag_after_days"], first["hold_after_days"]) == (90, 180)
    clock.advance(minutes=59)
    maintenance(api.services)
    assert len(sweeps(api)) == 1  # not due: the last run is in the database
    clock.advance(days=181)
    maintenance(api.services)
    latest = sweeps(api)[0]
    assert latest["counts"] == {"revoked": 0, "flagged": 1, "held": 1}
    r = api.http.get(f"{PATH}/{latest['id']}", headers=api.op)
    assert r.status_code == 200, r.text
    detail = r.json()
    device = silent_phone.phone.device_id
    assert (detail["flagged"], detail["held"], detail["revoked"]) == ([device], [device], [])
    api.assert_no_personal_data(r.text, "the sweep report")
    # Run again (next hour): the same state, a report of nothing.
    clock.advance(hours=1)
    maintenance(api.services)
    assert sweeps(api)[0]["counts"] == {"revoked": 0, "flagged": 0, "held": 0}
    r = api.http.get("/v1/operators/jobs", headers=api.op)
    (job,) = [j for j in r.json()["jobs"] if j["job"] == "mobile_sweep"]
    assert (job["runs"], job["counts"]) == (3, {"revoked": 0, "flagged": 0, "held": 0})
    r = api.http.get(f"{PATH}?limit=2", headers=api.op)
    assert [s["id"] for s in r.json()["sweeps"]][1] == latest["id"]


def test_only_national_operators_read_the_reports(api: Api) -> None:
    maintenance(api.services)
    (report,) = sweeps(api)
    scoped = api.caller(ClientRole.OPERATOR, "municipality:132217").headers
    for path in (PATH, f"{PATH}/{report['id']}"):
        api.problem(api.http.get(path), 401, "auth.required")
        body = api.problem(api.http.get(path, headers=scoped), 403, "auth.scope_missing")
        assert body["context"] == {"scope": "national"}
        for role in (ClientRole.STATION, ClientRole.CALLCENTER, ClientRole.RP):
            api.problem(api.http.get(path, headers=api.caller(role).headers), 403,
                        "auth.role_forbidden")


@pytest.mark.parametrize(("path", "status", "code"), [
    (f"{PATH}/{'0' * 32}", 404, "mobile.sweep_not_found"),
    (f"{PATH}/not-a-sweep-id", 422, "request.invalid"),
    (f"{PATH}/{'A' * 32}", 422, "request.invalid"),
    (f"{PATH}?limit=0", 422, "request.invalid"),
    (f"{PATH}?limit=101", 422, "request.invalid"),
])
def test_bad_requests_get_a_precise_problem(api: Api, path: str, status: int,
                                            code: str) -> None:
    api.problem(api.http.get(path, headers=api.op), status, code)


def test_a_sweep_that_cannot_tell_whether_it_is_due_stops_nothing(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> bool:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(api.services.mobile_sweep, "due", broken)
    maintenance(api.services)  # does not raise: the server keeps serving
    r = api.http.get("/v1/operators/jobs", headers=api.op)
    ran = {j["job"] for j in r.json()["jobs"]}
    assert "publish_crls" in ran and "mobile_sweep" not in ran
