"""The background jobs, visible (api.jobs, jpki.jobs): each maintenance piece is recorded with
when it ran, how long it took and what it did; a failure is recorded as the exception's type and
does not stop the other jobs; the OCSP refresh is reported as a sum of its runs."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from api.app import maintenance
from api.jobs import OCSP_REFRESH, JobRunner, RefreshReport
from api.logs import JsonFormatter
from tests.api.harness import ADULT, Api

pytestmark = pytest.mark.hsm

MAINTENANCE = ["abandon_stale_intents", "mobile_sweep", "publish_crls", "purge_challenges",
               "purge_limits", "renew_responders", "roll_up_rp_usage", "sweep_undelivered"]
# The mobile sweep runs at most once per JPKI_MOBILE_SWEEP_INTERVAL_SECONDS (an hour by default;
# tests/api/test_mobile_sweeps.py), the others on every tick.
EVERY_TICK = [j for j in MAINTENANCE if j != "mobile_sweep"]


def jobs(api: Api) -> dict[str, dict[str, Any]]:
    r = api.http.get("/v1/operators/jobs", headers=api.op)
    assert r.status_code == 200, r.text
    return {j["job"]: j for j in r.json()["jobs"]}


def test_each_maintenance_job_is_recorded_with_what_it_did(api: Api, clock: Any) -> None:
    api.problem(api.http.get("/v1/operators/jobs"), 401, "auth.required")
    api.problem(api.http.get("/v1/operators/jobs", headers=api.station), 403,
                "auth.role_forbidden")
    assert jobs(api) == {}
    maintenance(api.services)
    first = jobs(api)
    assert sorted(first) == MAINTENANCE
    scopes = len(api.services.crls.scopes())
    assert first["publish_crls"]["counts"] == {"full": scopes, "delta": 0}
    assert first["abandon_stale_intents"]["counts"] == {"abandoned": 0}
    assert first["purge_challenges"]["counts"] == {"deleted": 0}
    assert first["purge_limits"]["counts"] == {"buckets": 0, "budgets": 0}
    assert first["roll_up_rp_usage"]["counts"]["calls"] == 0
    assert first["mobile_sweep"]["counts"] == {"revoked": 0, "flagged": 0, "held": 0}
    for job in first.values():
        assert (job["outcome"], job["error"], job["runs"], job["failures"]) == ("ok", None, 1, 0)
        assert job["started_at"] == job["last_success_at"] == "2026-11-27T01:00:00Z"
        assert job["duration_ms"] >= 0

    clock.advance(minutes=16)  # the deltas are due now
    maintenance(api.services)
    second = jobs(api)
    assert second["publish_crls"]["counts"] == {"full": 0, "delta": scopes - 2}  # no ARL deltas
    assert {second[j]["runs"] for j in EVERY_TICK} == {2}
    assert second["mobile_sweep"]["runs"] == 1  # not due again within the hour
    assert second["publish_crls"]["started_at"] == "2026-11-27T01:16:00Z"


def test_a_failing_job_is_recorded_and_the_others_still_run(
        api: Api, clock: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    api.remember(ADULT)
    maintenance(api.services)
    clock.advance(minutes=1)

    def broken(actor: Any) -> list[str]:
        raise RuntimeError(f"a message quoting {ADULT['name']} at {ADULT['address']}")

    monkeypatch.setattr(api.services.counter, "sweep_undelivered", broken)
    caplog.clear()
    maintenance(api.services)
    after = jobs(api)
    swept = after["sweep_undelivered"]
    assert (swept["outcome"], swept["error"], swept["runs"], swept["failures"]) == \
        ("failed", "RuntimeError", 2, 1)
    assert swept["started_at"] == "2026-11-27T01:01:00Z"
    assert swept["last_success_at"] == "2026-11-27T01:00:00Z"
    assert {after[j]["outcome"] for j in MAINTENANCE if j != "sweep_undelivered"} == {"ok"}
    assert after["renew_responders"]["runs"] == 2  # the jobs after it ran
    (line,) = [json.loads(JsonFormatter().format(r)) for r in caplog.records
               if r.name == "jpki.job" and getattr(r, "fields", {}).get("outcome") == "failed"]
    assert (line["job"], line["error"], line["level"]) == ("sweep_undelivered", "RuntimeError",
                                                           "error")
    assert line["request_id"].startswith("job-")
    api.assert_no_personal_data(json.dumps(line, ensure_ascii=False), "the job log")


def test_the_ocsp_refresh_is_reported_as_a_sum_of_its_runs(
        api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    report = RefreshReport(api.services, JobRunner(api.services), every=3600)
    for _ in range(5):
        report.run()
    assert OCSP_REFRESH not in jobs(api)  # four runs a second must not write four rows
    report.report()
    row = jobs(api)[OCSP_REFRESH]
    assert row["counts"] == {"runs": 5, "failures": 0, "resigned": 0}
    assert (row["runs"], row["failures"], row["outcome"]) == (5, 0, "ok")

    def broken() -> int:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(api.services.ocsp, "refresh", broken)
    caplog.set_level(logging.INFO)
    caplog.clear()
    for _ in range(3):
        report.run()
    report.report()
    row = jobs(api)[OCSP_REFRESH]
    assert row["counts"] == {"runs": 3, "failures": 3, "resigned": 0}
    assert (row["runs"], row["failures"], row["outcome"], row["error"]) == \
        (8, 3, "failed", "RuntimeError")
    errors = [r for r in caplog.records if r.name == "jpki.job" and r.levelno == logging.ERROR]
    assert len(errors) == 1  # logged once when it starts failing, not four times a second
