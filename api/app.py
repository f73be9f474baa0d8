"""The FastAPI application factory (the HTTP composition root)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api import console, metrics, ocsp_traffic, openapi, problems
from api.anonymous import AnonymousLimit
from api.auth_guard import AuthGuard
from api.composition import Services, build_services
from api.jobs import (
    ABANDON_STALE_INTENTS,
    MOBILE_SWEEP,
    PUBLISH_CRLS,
    PURGE_CHALLENGES,
    PURGE_LIMITS,
    RENEW_RESPONDERS,
    ROLL_UP_RP_USAGE,
    SWEEP_UNDELIVERED,
    JobRunner,
    RefreshReport,
)
from api.limits import BodyLimit
from api.maintenance_lease import maintenance_lease
from api.ocsp_http import OcspEndpoint
from api.probes import Probes
from api.request_log import observe_request
from api.routers import (
    cards,
    certificates,
    counter,
    crl,
    dv,
    mobile,
    municipalities,
    notices,
    operations,
    public,
    relying_parties,
    residents,
    station_tasks,
)
from api.rp_audit import RefusalAudit
from api.rp_fast import PATHS as RP_FAST_PATHS
from api.rp_fast import RpFastPath
from jpki import __version__
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal
from jpki.revocation.ocsp.jobs import follow_status_changes, reconcile_at_start
from jpki.settings import Settings

log = logging.getLogger("jpki.api")
MAINTENANCE_SECONDS = 60.0
# How often each process samples the resources it holds for the metrics (api.metrics.sample)
# and adds its OCSP tally to them (api.metrics.MeteredOcsp).
SAMPLE_SECONDS = 1.0


class JpkiApp(FastAPI):
    """FastAPI with the OCSP responder dispatched before routing (see api.ocsp_http), and every
    other request under a request id, logged and measured (api.request_log) — those whose
    credentials' failure budget is spent refused before routing too (api.auth_guard), and the
    relying parties' status and basic 4 calls answered before routing when they can be
    (api.rp_fast)."""

    ocsp_endpoint: ASGIApp
    auth_guard: AuthGuard
    rp_fast: RpFastPath

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/ocsp" or path.startswith("/ocsp/"):
                await self.ocsp_endpoint(scope, receive, send)
                return
            await observe_request(self._guarded, scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self.auth_guard(scope, send):
            return
        if scope["path"] in RP_FAST_PATHS and scope["method"] == "POST":
            await self.rp_fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The application as FastAPI routes it: middleware, routing, dependencies."""
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document with what it cannot see: credentials, problem responses, /ocsp
        (api.openapi)."""
        if not self.openapi_schema:
            self.openapi_schema = openapi.document(self)
        return self.openapi_schema


def maintenance(services: Services, runner: JobRunner | None = None) -> None:
    """Housekeeping that must happen even if nobody asks: abandon stale issuance intents
    (architecture §3), revoke what was never delivered, keep every CA generation's OCSP
    responder certificate fresh, publish the CRLs that are due, delete the smartphone challenges
    that can no longer be used (anyone may ask for one), sum the relying parties' calls for the
    dashboard (jpki.store.rp_usage), delete the shared limits' rows that say nothing (whole
    buckets and budgets) and, when due, run the layered measures over smartphones
    (jpki.mobile.sweep). Each is a job of its own (api.jobs):
    timed, logged, recorded, and not stopped by another's failure."""
    from jpki.authority.ca import CeremonyReport

    runner = runner or JobRunner(services)
    job = Principal.system_job("maintenance")

    def abandon() -> dict[str, int]:
        abandoned = services.issuance.abandon_stale(
            authorize(job, Operation.PENDING_ABANDON),
            timedelta(seconds=services.settings.pending_timeout_seconds))
        if abandoned:
            log.warning("abandoned %d stale issuance intents", len(abandoned))
        return {"abandoned": len(abandoned)}

    def sweep() -> dict[str, int]:
        undelivered = services.counter.sweep_undelivered(authorize(job,
                                                                   Operation.DELIVERY_SWEEP))
        if undelivered:
            log.warning("revoked %d certificates never delivered to a card", len(undelivered))
        return {"revoked": len(undelivered)}

    def responders() -> dict[str, int]:
        report = CeremonyReport()
        services.cas.ensure_responders(authorize(job, Operation.RESPONDERS_RENEW), report)
        if report.created:
            services.ocsp.reload()
        return {"renewed": len(report.created)}

    def crls() -> dict[str, int]:
        due = services.crls.due()
        published = {"full": 0, "delta": 0}
        for kind in ("full", "delta"):
            scopes = [scope for scope, k in due if k == kind]
            if scopes:
                published[kind] = len(services.crls.publish_many(scopes, kinds=(kind,)))
        return published

    runner.run(ABANDON_STALE_INTENTS, abandon)
    runner.run(SWEEP_UNDELIVERED, sweep)
    runner.run(RENEW_RESPONDERS, responders)
    runner.run(PUBLISH_CRLS, crls)
    runner.run(PURGE_CHALLENGES, lambda: {"deleted": services.mobile.purge_challenges()})
    runner.run(ROLL_UP_RP_USAGE, services.rp_usage.roll_up)
    # The shared limits' rows of whole buckets and budgets (jpki.store.limits): a missing row
    # is a whole one, so this forgets nothing, and the rows of every source ever seen go.
    runner.run(PURGE_LIMITS, services.limits.purge)

    def mobile_sweep() -> dict[str, int]:
        report = services.mobile_sweep.run(authorize(job, Operation.MOBILE_SWEEP))
        return report.counts

    # The layered measures (jpki.mobile.sweep) pass over every device: once per
    # JPKI_MOBILE_SWEEP_INTERVAL_SECONDS, as the database remembers it, not every tick.
    try:
        due = services.mobile_sweep.due()
    except Exception as exc:  # like a failed job: reported, never stopping the server
        log.error("could not tell whether the mobile sweep is due: %s", type(exc).__name__)
        return
    if due:
        runner.run(MOBILE_SWEEP, mobile_sweep)


def _observed(app: FastAPI, services: Services) -> None:
    """Bind the metrics to ``services`` and give the app the probes that read the database."""
    metrics.bind(services)
    with contextlib.suppress(Exception):  # the gauges of what this process holds, from the start
        metrics.sample(services)
    app.state.probes = Probes(services)


def create_app(settings: Settings | None = None, services: Services | None = None) -> JpkiApp:
    settings = settings or Settings()
    owned = services is None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc: Services = services if services is not None else await run_in_threadpool(
            build_services, settings)
        app.state.services = svc
        _observed(app, svc)
        runner = JobRunner(svc)
        refresh = RefreshReport(svc, runner)
        # Of every worker on every node, the lease's holder does the housekeeping; the others
        # ask again before each run, and one of them takes over when the holder is gone.
        lease = maintenance_lease(svc.settings)
        if await run_in_threadpool(lease.held):
            await run_in_threadpool(maintenance, svc, runner)

        async def loop() -> None:
            while True:
                await asyncio.sleep(MAINTENANCE_SECONDS)
                try:
                    if await run_in_threadpool(lease.held):
                        await run_in_threadpool(maintenance, svc, runner)
                except Exception as exc:  # keep serving; report the type only
                    log.error("maintenance failed: %s", type(exc).__name__)

        # The OCSP responder's refresh, fed by the status-change feed: once before the first
        # request, then every POLL_SECONDS (jpki.revocation.ocsp.jobs), each run counted and
        # reported (api.jobs.RefreshReport).
        await reconcile_at_start(svc.ocsp.refresh, run_in_threadpool)

        async def sample() -> None:
            while True:
                with contextlib.suppress(Exception):  # a gauge left stale, never a crash
                    metrics.sample(svc)
                    metrics.flush_ocsp(app)
                await asyncio.sleep(SAMPLE_SECONDS)

        async def traffic() -> None:
            while True:
                await asyncio.sleep(ocsp_traffic.WRITE_SECONDS)
                await ocsp_traffic.write(app, svc)

        tasks = [asyncio.create_task(loop()),
                 asyncio.create_task(follow_status_changes(refresh.run, run_in_threadpool)),
                 asyncio.create_task(sample()), asyncio.create_task(traffic())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                metrics.flush_ocsp(app)
                await run_in_threadpool(refresh.report)
            with contextlib.suppress(Exception):
                await ocsp_traffic.write(app, svc)
            metrics.process_exiting()
            with contextlib.suppress(Exception):
                await run_in_threadpool(lease.release)
            if owned:
                svc.close()

    app = JpkiApp(title="jpki", version=__version__, lifespan=lifespan,
                  description="Certificate authority for national ID cards in the style of "
                              "JPKI: issuance, renewal, revocation, residents, cards.")
    if services is not None:
        app.state.services = services
        _observed(app, services)
    app.ocsp_endpoint = metrics.MeteredOcsp(OcspEndpoint(lambda: app.state.services.ocsp),
                                            now=lambda: app.state.services.clock.now())
    app.auth_guard = AuthGuard(lambda: app.state.services.auth_throttle)
    problems.install(app)
    app.include_router(public.router)
    app.include_router(operations.router)
    app.include_router(notices.router)
    app.include_router(crl.router)
    app.include_router(residents.router)
    app.include_router(residents.searches)
    app.include_router(dv.router)
    app.include_router(cards.router)
    app.include_router(certificates.router)
    app.include_router(counter.router)
    app.include_router(station_tasks.router)
    app.include_router(mobile.router)
    app.include_router(relying_parties.router)
    app.include_router(municipalities.router)
    console.mount(app)
    app.rp_fast = RpFastPath(app.routed, lambda: app.state.services, settings.max_body_bytes,
                             app.routes)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Outside the body guard, so that its refusals on the relying-party routes are audited too.
    app.add_middleware(RefusalAudit, services=lambda: app.state.services)
    # Outermost: a request over its source's rate costs nothing, not even an audit record.
    app.add_middleware(AnonymousLimit, buckets=lambda: app.state.services.anonymous)
    return app
