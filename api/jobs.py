"""Running background jobs so that operators can see them: each run is timed, counted in the
metrics, logged as one JSON line and recorded in the jobs' ledger (jpki.jobs) — when it ran, how
long it took, what it did, and if it failed, the exception's type.

A run has its own request id (``job-…``, jpki.correlation), which its log line and the audit
records it causes both carry. A failed run is reported and does not stop the runs after it: a
CRL that cannot be published must not keep the responder certificates from being renewed.

The OCSP refresh runs four times a second in every worker (api.app): each run is counted and
timed in the metrics, but the ledger gets one row — and the log one line — per
:data:`REFRESH_REPORT_SECONDS` summing the runs since the last (a row four times a second would
be most of the database's writes on a quiet day).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from time import perf_counter, time
from typing import TYPE_CHECKING

from api import metrics
from jpki.correlation import bound, new_request_id
from jpki.jobs import FAILED, OK
from jpki.model import JobRun

if TYPE_CHECKING:
    from api.composition import Services

log = logging.getLogger("jpki.job")
REFRESH_REPORT_SECONDS = 60.0

ABANDON_STALE_INTENTS = "abandon_stale_intents"
SWEEP_UNDELIVERED = "sweep_undelivered"
RENEW_RESPONDERS = "renew_responders"
PUBLISH_CRLS = "publish_crls"
PURGE_CHALLENGES = "purge_challenges"
MOBILE_SWEEP = "mobile_sweep"
OCSP_REFRESH = "ocsp_refresh"
ROLL_UP_RP_USAGE = "roll_up_rp_usage"
PURGE_LIMITS = "purge_limits"


def _observe(job: str, outcome: str, seconds: float, counts: Mapping[str, int]) -> None:
    metrics.JOB_RUNS.labels(job, outcome).inc()
    metrics.JOB_SECONDS.labels(job).observe(seconds)
    for item, count in counts.items():
        if count:
            metrics.JOB_ITEMS.labels(job, item).inc(count)


class JobRunner:
    def __init__(self, services: Services) -> None:
        self._services = services

    def run(self, job: str, work: Callable[[], Mapping[str, int]]) -> bool:
        """Run ``work`` (which returns what it did, as counts) as one run of ``job``; True if
        it succeeded."""
        started_at = self._services.clock.now()
        started = perf_counter()
        error: str | None = None
        counts: dict[str, int] = {}
        request_id = new_request_id("job-")
        with bound(request_id):
            try:
                counts = dict(work())
            except Exception as exc:  # reported below; the text may quote data: type only
                error = type(exc).__name__
            seconds = perf_counter() - started
            outcome = OK if error is None else FAILED
            _observe(job, outcome, seconds, counts)
            fields = {"event": "job", "job": job, "outcome": outcome,
                      "duration_ms": round(seconds * 1000, 3), "counts": counts,
                      "error": error}
            log.log(logging.INFO if error is None else logging.ERROR, "job", extra={
                "request_id": request_id, "fields": fields})
            self.record(JobRun(job=job, started_at=started_at,
                                duration_ms=round(seconds * 1000), outcome=outcome, error=error,
                                counts=counts, runs=1, failures=0 if error is None else 1,
                                last_success_at=started_at if error is None else None))
        return error is None

    def record(self, run: JobRun) -> None:
        """Add ``run`` to the ledger; a failure to do so is logged, not raised."""
        try:
            self._services.jobs.record(run)
        except Exception as exc:  # the job ran; only its report is lost
            log.error("could not record a run of %s: %s", run.job, type(exc).__name__)


class RefreshReport:
    """The OCSP refresh of one process, run by its 0.25 s loop and reported by the minute."""

    def __init__(self, services: Services, runner: JobRunner,
                 every: float = REFRESH_REPORT_SECONDS) -> None:
        self._services = services
        self._runner = runner
        self._every = every
        self._lock = threading.Lock()
        self._reset(time())
        self._failing = False

    def _reset(self, at: float) -> None:
        self._since = at
        self._runs = self._failures = self._resigned = 0
        self._longest = 0.0
        self._last_started: datetime | None = None
        self._last_success: datetime | None = None
        self._last_error: str | None = None

    def run(self) -> None:
        started_at = self._services.clock.now()
        started = perf_counter()
        error: str | None = None
        resigned = 0
        try:
            resigned = self._services.ocsp.refresh()
        except Exception as exc:  # keep serving; the type only
            error = type(exc).__name__
        seconds = perf_counter() - started
        _observe(OCSP_REFRESH, OK if error is None else FAILED, seconds,
                 {"resigned": resigned})
        if error is not None and not self._failing:
            log.error("OCSP refresh failed: %s", error)  # once, when it starts failing
        self._failing = error is not None
        with self._lock:
            self._runs += 1
            self._failures += error is not None
            self._resigned += resigned
            self._longest = max(self._longest, seconds)
            self._last_started = started_at
            self._last_error = error
            if error is None:
                self._last_success = started_at
            due = time() - self._since >= self._every
        if due:
            self.report()

    def report(self) -> None:
        """Record the runs since the last report as one ledger row and one log line."""
        with self._lock:
            if self._runs == 0 or self._last_started is None:
                return
            outcome = OK if self._last_error is None else FAILED
            run = JobRun(job=OCSP_REFRESH, started_at=self._last_started,
                         duration_ms=round(self._longest * 1000), outcome=outcome,
                         error=self._last_error,
                         counts={"runs": self._runs, "failures": self._failures,
                                 "resigned": self._resigned},
                         runs=self._runs, failures=self._failures,
                         last_success_at=self._last_success)
            self._reset(time())
        log.info("job", extra={"fields": {
            "event": "job", "job": OCSP_REFRESH, "outcome": outcome,
            "longest_ms": run.duration_ms, "counts": run.counts, "error": run.error}})
        self._runner.record(run)
