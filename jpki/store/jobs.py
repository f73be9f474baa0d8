"""The job ledger's repository (jpki.jobs): one upserted row per job."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from jpki.model import JobRun
from jpki.store.tables import job_runs


class SqlJobRuns:
    def __init__(self, session: Session) -> None:
        self._s = session

    def record(self, run: JobRun) -> None:
        # One statement, so that two processes reporting the same job at once both count.
        upsert = sqlite_insert if self._s.get_bind().dialect.name == "sqlite" else pg_insert
        stmt = upsert(job_runs).values(
            job=run.job, started_at=run.started_at, duration_ms=run.duration_ms,
            outcome=run.outcome, error=run.error,
            counts=json.dumps(run.counts, sort_keys=True, separators=(",", ":")),
            runs=run.runs, failures=run.failures, last_success_at=run.last_success_at)
        ex = stmt.excluded
        self._s.execute(stmt.on_conflict_do_update(index_elements=["job"], set_={
            "started_at": ex.started_at, "duration_ms": ex.duration_ms, "outcome": ex.outcome,
            "error": ex.error, "counts": ex.counts,
            "runs": job_runs.c.runs + ex.runs, "failures": job_runs.c.failures + ex.failures,
            "last_success_at": func.coalesce(ex.last_success_at, job_runs.c.last_success_at)}))

    def all(self) -> Sequence[JobRun]:
        rows = self._s.execute(select(job_runs).order_by(job_runs.c.job)).all()
        return [job_run_of(r) for r in rows]


def job_run_of(r: Any) -> JobRun:
    """A row of ``job_runs`` as the ledger gives it."""
    return JobRun(job=r.job, started_at=r.started_at, duration_ms=int(r.duration_ms),
                  outcome=r.outcome, error=r.error, counts=dict(json.loads(r.counts)),
                  runs=int(r.runs), failures=int(r.failures),
                  last_success_at=r.last_success_at)
