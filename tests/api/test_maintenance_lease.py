"""The housekeeping runs in one process of the whole deployment (api.maintenance_lease): on
SQLite a file lock in the data directory (one host), on PostgreSQL an advisory lock in the
database, so that jpki nodes on several hosts sharing it do not each run every job
(docs/deployment.md, "Jobs run once"). A process that does not hold the lease asks again before
each run and takes over when the holder is gone."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.app as app_module
from api.app import create_app
from api.maintenance_lease import FileLease, maintenance_lease
from jpki.store.leases import AdvisoryLease
from tests.api.harness import Api

pytestmark = pytest.mark.hsm

MAINTENANCE = {"abandon_stale_intents", "publish_crls", "purge_challenges", "renew_responders",
               "sweep_undelivered"}


def ran(client: TestClient, api: Api) -> set[str]:
    r = client.get("/v1/operators/jobs", headers=api.op)
    assert r.status_code == 200, r.text
    return {j["job"] for j in r.json()["jobs"]} & MAINTENANCE


def test_the_lease_is_in_the_database_when_the_database_is_postgres(api: Api) -> None:
    lease = maintenance_lease(api.services.settings)
    try:
        postgres = api.services.settings.resolved_database_url.startswith("postgresql")
        assert isinstance(lease, AdvisoryLease if postgres else FileLease)
    finally:
        lease.release()


def test_a_process_without_the_lease_runs_no_job_until_the_holder_is_gone(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another node (PostgreSQL) or another worker (SQLite) holds the lease.
    other: Any = maintenance_lease(api.services.settings)
    assert other.held()
    monkeypatch.setattr(app_module, "MAINTENANCE_SECONDS", 0.2)
    try:
        app = create_app(api.services.settings, services=api.services)
        with TestClient(app) as client:
            time.sleep(1.0)  # several turns of the loop
            assert ran(client, api) == set()
            other.release()  # the holder dies
            deadline = time.monotonic() + 20
            while ran(client, api) != MAINTENANCE:
                assert time.monotonic() < deadline, "no process took the lease over"
                time.sleep(0.2)
    finally:
        other.release()
