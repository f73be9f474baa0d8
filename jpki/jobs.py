"""The ledger of background jobs: when each last ran, how long it took, what it did.

Operators see it without reading logs (``GET /v1/operators/jobs``, ``jpki jobs``, and the
``jpki_job_last_*`` metrics). It lives in the database so that every worker process — and every
node of a deployment sharing the database — reports the same thing, whichever of them ran the
job. One row per job: the latest run, and totals of runs and failures.
"""

from __future__ import annotations

from jpki.model import JobRun
from jpki.ports import JobsUnitOfWorkFactory

OK = "ok"
FAILED = "failed"

# `jpki audit verify` reports itself in the ledger too, so that the dashboard can say when the
# chain was last verified, with what result, over how many records (jpki.registry.statistics).
AUDIT_VERIFY = "audit_verify"


class JobLedger:
    def __init__(self, uow_factory: JobsUnitOfWorkFactory) -> None:
        self._uow = uow_factory

    def record(self, run: JobRun) -> None:
        with self._uow() as uow:
            uow.jobs.record(run)
            uow.commit()

    def runs(self) -> list[JobRun]:
        with self._uow() as uow:
            return sorted(uow.jobs.all(), key=lambda r: r.job)
