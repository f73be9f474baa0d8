"""Prometheus metrics (prometheus-client), bound to the services by the composition root.

The core imports no metrics library: it reports committed audit records and CRL timings through
the telemetry port (jpki.telemetry), the HSM key store session waits and operation times through
its observer (hsm.pool.HsmObserver); :func:`bind` attaches one :class:`PrometheusTelemetry` to
both. Counts derived from audit records move only once their transaction has committed.

Exposition (``GET /metrics``, operator role; api.routers.operations) merges three sources:

- the counters, histograms and per-process gauges of this module, which prometheus-client keeps
  per process — or, when ``jpki serve --workers N`` sets ``PROMETHEUS_MULTIPROC_DIR``, in files
  that every worker writes and the worker answering the scrape aggregates (multiprocess mode);
- per-process gauges sampled every second and just before (HSM sessions and database
  connections in use, the OCSP feed lag);
- gauges read from the database at scrape time (api.probes), which every process and node sees
  the same: the jobs' ledger, the OCSP presign backlog, CRL freshness, responder certificates'
  time left.

Labels are codes and identifiers of the service's own making — certificate kinds, RFC 5280
reason names, relying-party ids, problem codes, route templates, CA generations, municipality
codes of CRL shards — never anything a resident or a request supplied as free text.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jpki.model import AuditRecord, CrlPublication
from jpki.telemetry import OCSP_BUCKETS

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from api.composition import Services

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# OCSP answers from memory in tens of microseconds, from the database or the HSM in
# milliseconds: the buckets separate the two (shared with the dashboard's traffic table).
_OCSP_BUCKETS = OCSP_BUCKETS
_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                 300.0)

# --- certificates (from committed audit records) ---------------------------------------------

CERTIFICATES_ISSUED = Counter(
    "jpki_certificates_issued_total", "Certificates issued (first issue or re-issue).", ["kind"])
CERTIFICATES_RENEWED = Counter(
    "jpki_certificates_renewed_total", "Certificates issued as a renewal.", ["kind"])
CERTIFICATES_REVOKED = Counter(
    "jpki_certificates_revoked_total",
    "Certificates revoked or put on hold, by RFC 5280 reason.", ["kind", "reason"])
HOLDS_RELEASED = Counter(
    "jpki_certificate_holds_released_total", "Holds released (mobile certificates).", ["kind"])
INTENTS_ABANDONED = Counter(
    "jpki_issuance_intents_abandoned_total",
    "Issuance intents abandoned (reported as revoked).", ["kind"])

# --- relying parties (from committed audit records) ---------------------------------------------

RP_CALLS = Counter(
    "jpki_rp_calls_total",
    "Relying-party calls by relying party, call and outcome (ok, or the refusal's problem code).",
    ["relying_party", "call", "outcome"])
RATE_LIMIT_REFUSALS = Counter(
    "jpki_rate_limit_refusals_total", "Calls refused by a rate limit (HTTP 429).",
    ["relying_party"])

# --- OCSP ---------------------------------------------------------------------------------------

OCSP_FEED_LAG = Gauge(
    "jpki_ocsp_feed_lag_seconds",
    "How old a status change may be and still not be reflected in what a process serves: the "
    "time since its last complete status poll began (with --workers, the worst process).",
    multiprocess_mode="max")
OCSP_REQUESTS = Histogram(
    "jpki_ocsp_request_duration_seconds",
    "OCSP requests over HTTP by outcome (the OCSPResponseStatus, or http_<status> for a "
    "refusal at the HTTP level), and how long each took.", ["outcome"], buckets=_OCSP_BUCKETS)

# --- CRLs ---------------------------------------------------------------------------------------

CRL_PUBLICATION_SECONDS = Histogram(
    "jpki_crl_publication_duration_seconds",
    "Time to generate, sign, write and record one CRL.", ["kind"], buckets=_SLOW_BUCKETS)
_CRL_LABELS = ["ca", "generation", "shard", "kind"]
CRL_LAST_SECONDS = Gauge(
    "jpki_crl_last_publication_duration_seconds",
    "Duration of the latest publication of each CRL scope.", _CRL_LABELS,
    multiprocess_mode="mostrecent")
CRL_SIZE = Gauge("jpki_crl_size_bytes", "Size of the latest CRL of each scope.", _CRL_LABELS,
                 multiprocess_mode="mostrecent")
CRL_ENTRIES = Gauge("jpki_crl_entries", "Entries in the latest CRL of each scope.", _CRL_LABELS,
                    multiprocess_mode="mostrecent")

# --- HSM and database ---------------------------------------------------------------------------

HSM_OPERATION_SECONDS = Histogram(
    "jpki_hsm_operation_duration_seconds", "Signatures and MACs in the HSM, by operation.",
    ["operation"], buckets=_FAST_BUCKETS)
HSM_SESSION_WAIT_SECONDS = Histogram(
    "jpki_hsm_session_wait_seconds",
    "Waits for an HSM session when every session of the pool was in use.",
    buckets=_FAST_BUCKETS)
HSM_SESSIONS = Gauge("jpki_hsm_sessions", "HSM sessions in the pools, by state.", ["state"],
                     multiprocess_mode="livesum")
DB_CONNECTIONS = Gauge(
    "jpki_db_pool_connections",
    "Database connections of the pools (write and read engines), by state.",
    ["engine", "state"], multiprocess_mode="livesum")
WORKERS = Gauge("jpki_worker_up", "1 per live server process (labelled by pid with --workers).",
                multiprocess_mode="liveall")

# --- HTTP and jobs ------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "jpki_http_requests_total", "HTTP requests (OCSP excluded) by method, route and status.",
    ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "jpki_http_request_duration_seconds", "HTTP request durations (OCSP excluded) by route.",
    ["route"], buckets=_FAST_BUCKETS)
JOB_RUNS = Counter("jpki_job_runs_total", "Background job runs by outcome.", ["job", "outcome"])
JOB_SECONDS = Histogram("jpki_job_duration_seconds", "Background job run durations.", ["job"],
                        buckets=_SLOW_BUCKETS)
JOB_ITEMS = Counter("jpki_job_items_total", "What background jobs did, by job and item.",
                    ["job", "item"])

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_RP_ROUTES = {"GET /v1/rp/ping": "ping", "POST /v1/status": "status",
              "POST /v1/linkage": "linkage", "POST /v1/basic4": "basic4",
              "POST /v1/consents/withdrawals": "withdrawal"}


def _label(value: object) -> str:
    """A label value from an audit payload: the service's own identifiers and codes, bounded."""
    return "none" if value is None else str(value)[:64]


def _payload(record: AuditRecord) -> dict[str, Any]:
    try:
        data = json.loads(record.payload)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# --- binding ------------------------------------------------------------------------------------


class PrometheusTelemetry:
    """The core's telemetry port (jpki.telemetry) and the key store's observer, as metrics."""

    def audited(self, records: Sequence[AuditRecord]) -> None:
        for record in records:
            handle = _AUDITED.get(record.action)
            if handle is not None:
                handle(record)

    def crl_published(self, ca: str, generation: int, publication: CrlPublication,
                      seconds: float) -> None:
        CRL_PUBLICATION_SECONDS.labels(publication.kind).observe(seconds)
        labels = (ca, f"g{generation:02d}", publication.scope, publication.kind)
        CRL_LAST_SECONDS.labels(*labels).set(seconds)
        CRL_SIZE.labels(*labels).set(publication.size)
        CRL_ENTRIES.labels(*labels).set(publication.entries)

    def waited(self, seconds: float) -> None:
        HSM_SESSION_WAIT_SECONDS.observe(seconds)

    def operated(self, operation: str, seconds: float) -> None:
        HSM_OPERATION_SECONDS.labels(operation).observe(seconds)


def _issued(record: AuditRecord) -> None:
    p = _payload(record)
    counter = CERTIFICATES_RENEWED if p.get("renewal") else CERTIFICATES_ISSUED
    counter.labels(_label(p.get("kind"))).inc()


def _revoked(record: AuditRecord) -> None:
    p = _payload(record)
    # The reason the certificate now has (a revocation may keep an earlier, stronger one).
    reason = p.get("revocation_reason") or p.get("reason")
    CERTIFICATES_REVOKED.labels(_label(p.get("kind")), _label(reason)).inc()


def _released(record: AuditRecord) -> None:
    HOLDS_RELEASED.labels(_label(_payload(record).get("kind"))).inc()


def _abandoned(record: AuditRecord) -> None:
    INTENTS_ABANDONED.labels(_label(_payload(record).get("kind"))).inc()


def _rp_call(call: str, *, from_subject: bool = False) -> Callable[[AuditRecord], None]:
    def handle(record: AuditRecord) -> None:
        rp = record.subject if from_subject else _payload(record).get("relying_party")
        RP_CALLS.labels(_label(rp), call, "ok").inc()
    return handle


def _rp_refused(record: AuditRecord) -> None:
    p = _payload(record)
    rp, code = _label(p.get("relying_party")), _label(p.get("code"))
    RP_CALLS.labels(rp, _RP_ROUTES.get(record.subject, "other"), code).inc()
    if p.get("status") == 429:
        RATE_LIMIT_REFUSALS.labels(rp).inc()


# consent.recorded and basic4.withheld_dv are left out: each comes with another record of the
# same call (basic4.provided; rp.refused), which counts it.
_AUDITED: dict[str, Callable[[AuditRecord], None]] = {
    "certificate.issued": _issued,
    "certificate.revoked": _revoked,
    "certificate.hold_released": _released,
    "certificate.abandoned": _abandoned,
    "rp.status": _rp_call("status", from_subject=True),
    "rp.linkage": _rp_call("linkage"),
    "basic4.provided": _rp_call("basic4"),
    "consent.withdrawn": _rp_call("withdrawal"),
    "rp.refused": _rp_refused,
}


def bind(services: Services) -> None:
    """Observe ``services`` (idempotent: binding the same services again changes nothing)."""
    telemetry = PrometheusTelemetry()
    services.audit.telemetry = telemetry
    services.crls.telemetry = telemetry
    services.keys.observe(telemetry)
    WORKERS.set(1)


# --- HTTP -----------------------------------------------------------------------------------


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method if method in _METHODS else "other", route, str(status)).inc()
    HTTP_SECONDS.labels(route).observe(seconds)


# OCSPResponseStatus (RFC 6960 §4.2.1).
_OCSP_STATUS = {0: "successful", 1: "malformedRequest", 2: "internalError", 3: "tryLater",
                5: "sigRequired", 6: "unauthorized"}


def ocsp_outcome(status: int, body: bytes) -> str:
    """The OCSPResponseStatus of a DER OCSPResponse (``30 len 0A 01 status …``), read from its
    first bytes without parsing the rest; ``http_<status>`` for an HTTP-level refusal."""
    if status != 200:
        return f"http_{status}"
    if len(body) < 5 or body[0] != 0x30:
        return "unknown"
    first = body[1]
    at = 2 if first < 0x80 else 2 + (first & 0x7F)
    if body[at:at + 2] != b"\x0a\x01":
        return "unknown"
    return _OCSP_STATUS.get(body[at + 2], "unknown")


class MeteredOcsp:
    """Counts and times every request of the OCSP endpoint around it (api.ocsp_http), which it
    leaves as it is: the outcome is read from the first bytes of the response as it is sent.

    The hot path answers a repeated request in a few tens of microseconds, so a request here only
    adds to a tally in plain Python — a clock read on each side, a wrapped ``send``, a bisection
    — and the tally goes into the histogram by :meth:`flush`, at most once a second and whenever
    the metrics are read (in the event loop, like the requests: no lock). A histogram
    observation per request would cost several times as much, more in multiprocess mode, whose
    values live in shared files (bench/ocsp_metering.py, docs/performance.md).
    """

    FLUSH_SECONDS = 1.0

    def __init__(self, endpoint: ASGIApp,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._endpoint = endpoint
        # outcome → [count per bucket (the last: +Inf)], and outcome → sum of durations.
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._flushed = perf_counter()
        # What the flushes added since the database last took it (api.ocsp_traffic), by the
        # minute of the flush (a request counts in the minute it was flushed in, at most a
        # second later than it was answered).
        self._now = now
        self._traffic: dict[tuple[datetime, str], tuple[list[int], float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        outcome = "error"
        status = 200

        async def observed(message: Message) -> None:
            nonlocal outcome, status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif outcome == "error":
                outcome = ocsp_outcome(status, message.get("body", b""))
            await send(message)

        try:
            await self._endpoint(scope, receive, observed)
        finally:
            ended = perf_counter()
            counts = self._counts.get(outcome)
            if counts is None:
                counts = self._counts[outcome] = [0] * (len(_OCSP_BUCKETS) + 1)
                self._sums[outcome] = 0.0
            # bisect_left: the first bucket whose bound is >= the duration (le, inclusive).
            counts[bisect_left(_OCSP_BUCKETS, ended - started)] += 1
            self._sums[outcome] += ended - started
            if ended - self._flushed >= self.FLUSH_SECONDS:
                self.flush()

    def flush(self) -> None:
        """Add the tally to the histogram and start a new one. Call in the event loop."""
        self._flushed = perf_counter()
        counts, sums = self._counts, self._sums
        self._counts, self._sums = {}, {}
        if counts:
            minute = self._now().replace(second=0, microsecond=0)
            self.give_back({(minute, outcome): (buckets, sums[outcome])
                            for outcome, buckets in counts.items()})
        for outcome, buckets in counts.items():
            _add_to_histogram(OCSP_REQUESTS.labels(outcome), buckets, sums[outcome])

    def take_traffic(self) -> dict[tuple[datetime, str], tuple[list[int], float]]:
        """What was flushed since the last call, by (minute, outcome): bucket counts and the
        sum of durations. Call in the event loop, like :meth:`flush`."""
        traffic, self._traffic = self._traffic, {}
        return traffic

    def give_back(self, traffic: Mapping[tuple[datetime, str], tuple[list[int], float]]
                  ) -> None:
        """Add ``traffic`` to what :meth:`take_traffic` gives next (the flushes' own, or a
        tally the database could not take)."""
        for key, (buckets, seconds) in traffic.items():
            kept = self._traffic.get(key)
            if kept is None:
                self._traffic[key] = (list(buckets), seconds)
            else:
                self._traffic[key] = ([a + b for a, b in zip(kept[0], buckets, strict=True)],
                                      kept[1] + seconds)


def _add_to_histogram(child: Histogram, buckets: list[int], total: float) -> None:
    """Add many observations to a histogram at once: ``buckets[i]`` of them in bucket ``i``
    (non-cumulative, as the histogram keeps them), summing to ``total``. prometheus-client has
    no public call for it: this uses the child's bucket and sum values (tests/api/test_metrics.py
    checks the result equals observing one by one); without them, it observes one by one, each
    at its bucket's bound."""
    values = getattr(child, "_buckets", None)
    summed = getattr(child, "_sum", None)
    if isinstance(values, list) and len(values) == len(buckets) and summed is not None:
        for value, count in zip(values, buckets, strict=True):
            if count:
                value.inc(count)
        summed.inc(total)
        return
    bounds = (*_OCSP_BUCKETS, _OCSP_BUCKETS[-1])  # pragma: no cover - a changed library
    for bound, count in zip(bounds, buckets, strict=True):  # pragma: no cover
        for _ in range(count):
            child.observe(bound)


def flush_ocsp(app: object) -> None:
    """Flush the OCSP tally of ``app`` (api.app.JpkiApp), in its event loop."""
    endpoint = getattr(app, "ocsp_endpoint", None)
    if isinstance(endpoint, MeteredOcsp):
        endpoint.flush()


# --- per-process sampling and exposition --------------------------------------------------------


def sample(services: Services) -> None:
    """Set this process's gauges of resources in use (called every few seconds by each worker,
    and by the one answering a scrape)."""
    lag = services.ocsp.feed_lag_seconds()
    if lag is not None:  # None before the process's first poll: no figure yet
        OCSP_FEED_LAG.set(lag)
    size, in_use = services.keys.pool_size, services.keys.sessions_in_use
    HSM_SESSIONS.labels("in_use").set(in_use)
    HSM_SESSIONS.labels("idle").set(size - in_use)
    for name, engine in (("write", services.uow.engine), ("read", services.read_engine)):
        pool: Any = engine.pool
        if hasattr(pool, "checkedout"):
            DB_CONNECTIONS.labels(name, "checked_out").set(pool.checkedout())
            DB_CONNECTIONS.labels(name, "idle").set(pool.checkedin())


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_multiprocess_dir(directory: Path) -> None:
    """Create the directory the workers share, emptied of an earlier run's files (which would
    otherwise be added to this run's counts)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def process_exiting() -> None:
    """Drop this worker's live gauges from the aggregate (multiprocess mode)."""
    if multiprocess_dir() is not None:
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _ThisProcess(Collector):
    """The process's own registry, for single-process exposition next to the database's."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def exposition(extra: Collector) -> bytes:
    """The text exposition of every metric, ``extra`` (the database's gauges) included."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir() is not None:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(extra)
    return generate_latest(registry)
