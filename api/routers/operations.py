"""Watching the service: readiness (public, for load balancers and orchestrators), Prometheus
metrics and the background jobs' ledger (operator role: the figures describe the CA's activity,
and relying parties' and clients' identifiers are among their labels).

``/healthz`` (api.routers.public) says the process is alive; ``/readyz`` whether it can serve
(api.health).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.deps import ServicesDep, authorized
from api.health import readiness
from api.openapi import problems
from api.probes import Probes, StateCollector
from jpki.access.authz import Grant, Operation
from jpki.registry.statistics import MAX_DAYS, DayCount, Report

router = APIRouter(tags=["operations"])

MetricsRead = Annotated[Grant[Literal[Operation.METRICS_READ]],
                        Depends(authorized(Operation.METRICS_READ))]
StatisticsRead = Annotated[Grant[Literal[Operation.STATISTICS_READ]],
                           Depends(authorized(Operation.STATISTICS_READ))]
JobsRead = Annotated[Grant[Literal[Operation.JOBS_READ]], Depends(authorized(Operation.JOBS_READ))]


def probes_of(request: Request) -> Probes:
    probes: Probes = request.app.state.probes
    return probes


class CheckOut(BaseModel):
    ok: bool
    detail: str


class ReadinessOut(BaseModel):
    status: str  # ready | unready
    checks: dict[str, CheckOut]


class JobRunOut(BaseModel):
    job: str
    started_at: datetime
    duration_ms: int
    outcome: str
    error: str | None
    counts: dict[str, int]
    runs: int
    failures: int
    last_success_at: datetime | None


class JobsOut(BaseModel):
    jobs: list[JobRunOut]


class DayCountOut(BaseModel):
    day: date
    kind: str
    count: int


class ReasonCountOut(BaseModel):
    reason: str  # RFC 5280 CRLReason name
    count: int


class MonthCountOut(BaseModel):
    month: str  # YYYY-MM, JST
    kind: str
    count: int


class PrefectureCountOut(BaseModel):
    prefecture: str  # JIS X 0401 code
    kind: str
    count: int


class CrlShardOut(BaseModel):
    ca: str
    generation: int
    scope: str  # municipality code, or "arl"
    number: int
    this_update: datetime
    next_update: datetime
    entries: int
    overdue: bool  # past nextUpdate when the report was read


class OcspDayOut(BaseModel):
    day: date  # JST
    requests: int  # every worker and node of the service
    successful: int
    per_second: float  # mean over the day (today: over the part gone)
    peak_per_second: float  # the busiest minute's
    mean_ms: float | None
    p50_ms: float | None  # from the histogram's buckets, as histogram_quantile
    p99_ms: float | None


class RpUsageOut(BaseModel):
    relying_party: str
    name: str | None
    scope: str  # status | linkage | basic4
    calls: int  # answered
    refused: int
    items: int  # serials asked (status); answers given (linkage, basic4)


class RpCoverageOut(BaseModel):
    through: int  # the audit record the relying-party figures are summed up to
    head: int  # the chain's last record when the report was read
    at: datetime | None  # when they were summed (None: not yet)


class AuditVerificationOut(BaseModel):
    at: datetime | None  # the latest `jpki audit verify` (None: never)
    outcome: str | None  # ok | failed
    records: int | None
    error: str | None
    broken_at: int | None
    runs: int
    failures: int
    last_success_at: datetime | None
    head: int  # records in the chain now


class StatisticsOut(BaseModel):
    since: date
    until: date
    issued: list[DayCountOut]
    renewed: list[DayCountOut]
    revoked: list[DayCountOut]
    reasons: list[ReasonCountOut]
    expiring: list[MonthCountOut]
    valid_by_prefecture: list[PrefectureCountOut]
    crls: list[CrlShardOut]
    ocsp: list[OcspDayOut]
    rp_usage: list[RpUsageOut]
    rp_coverage: RpCoverageOut
    audit_verification: AuditVerificationOut


def statistics_out(report: Report) -> StatisticsOut:
    """The report as the API and the console's CSV files give it."""
    def days(rows: tuple[DayCount, ...]) -> list[DayCountOut]:
        return [DayCountOut(day=r.day, kind=r.kind.value, count=r.count) for r in rows]

    return StatisticsOut(
        since=report.since, until=report.until, issued=days(report.issued),
        renewed=days(report.renewed), revoked=days(report.revoked),
        reasons=[ReasonCountOut(reason=r.reason.rfc_name, count=r.count)
                 for r in report.reasons],
        expiring=[MonthCountOut(month=m.month, kind=m.kind.value, count=m.count)
                  for m in report.expiring],
        valid_by_prefecture=[PrefectureCountOut(prefecture=p.prefecture, kind=p.kind.value,
                                                count=p.count)
                             for p in report.valid_by_prefecture],
        crls=[CrlShardOut(ca=c.ca, generation=c.generation, scope=c.scope, number=c.number,
                          this_update=c.this_update, next_update=c.next_update,
                          entries=c.entries, overdue=c.overdue(report.at))
              for c in report.crls],
        ocsp=[OcspDayOut(**asdict(d)) for d in report.ocsp],
        rp_usage=[RpUsageOut(**asdict(u)) for u in report.rp_usage],
        rp_coverage=RpCoverageOut(**asdict(report.rp_coverage)),
        audit_verification=AuditVerificationOut(**asdict(report.audit_verification)))


@router.get("/readyz", response_model=ReadinessOut,
            responses={503: {"model": ReadinessOut, "description": "Not ready"}})
async def ready(request: Request, services: ServicesDep) -> JSONResponse:
    """200 when the database, the HSM, the OCSP responder certificates and the CRLs are all
    usable; 503 with the failing checks otherwise."""
    checks = await readiness(services, probes_of(request))
    ok = all(c.ok for c in checks)
    body = ReadinessOut(status="ready" if ok else "unready",
                        checks={c.name: CheckOut(ok=c.ok, detail=c.detail) for c in checks})
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503,
                        headers={"Cache-Control": "no-store"})


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {metrics.CONTENT_TYPE: {}}}})
async def prometheus_metrics(request: Request, services: ServicesDep,
                             _: MetricsRead) -> Response:
    """Prometheus text exposition of every metric (README, Observability)."""
    # In the event loop, where the OCSP endpoint keeps its tally; the rest in the thread pool
    # (the database's gauges are read at scrape time).
    metrics.flush_ocsp(request.app)

    def render() -> bytes:
        metrics.sample(services)
        return metrics.exposition(StateCollector(probes_of(request), services.clock.now))

    body = await run_in_threadpool(render)
    return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})


@router.get("/v1/operators/statistics", response_model=StatisticsOut, responses=problems(400))
def statistics(services: ServicesDep, grant: StatisticsRead,
               days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = 30) -> StatisticsOut:
    """National figures over the last ``days`` (JST days, today included): certificates
    issued, renewed and revoked per day and kind, revocation reasons, the expiry wave for the
    next 24 months, valid certificates per prefecture, each CRL shard's newest full CRL, the
    OCSP endpoint's requests, rate and latency per day (the whole service's), the relying
    parties' calls per party and scope, and the audit chain's last verification."""
    return statistics_out(services.statistics.report(grant, days))


@router.get("/v1/operators/jobs", response_model=JobsOut)
def jobs(services: ServicesDep, _: JobsRead) -> JobsOut:
    """Each background job's latest run — when, how long, what it did — and its totals."""
    return JobsOut(jobs=[JobRunOut(job=r.job, started_at=r.started_at,
                                   duration_ms=r.duration_ms, outcome=r.outcome, error=r.error,
                                   counts=r.counts, runs=r.runs, failures=r.failures,
                                   last_success_at=r.last_success_at)
                         for r in services.jobs.runs()])
