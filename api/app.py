"""The FastAPI application factory (the HTTP composition root)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import IO

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from api import problems
from api.auth_guard import AuthGuard
from api.composition import Services, build_services
from api.limits import BodyLimit
from api.ocsp_http import OcspEndpoint
from api.routers import (
    cards,
    certificates,
    counter,
    crl,
    mobile,
    public,
    relying_parties,
    residents,
)
from api.rp_audit import RefusalAudit
from jpki import __version__
from jpki.principals import Principal
from jpki.settings import Settings
from jpki.status_feed import POLL_SECONDS

log = logging.getLogger("jpki.api")
MAINTENANCE_SECONDS = 60.0


class JpkiApp(FastAPI):
    """FastAPI with the OCSP responder dispatched before routing (see api.ocsp_http), and
    credentials whose failure budget is spent refused there too (api.auth_guard)."""

    ocsp_endpoint: OcspEndpoint
    auth_guard: AuthGuard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/ocsp" or path.startswith("/ocsp/"):
                await self.ocsp_endpoint(scope, receive, send)
                return
            if await self.auth_guard(scope, send):
                return
        await super().__call__(scope, receive, send)


def maintenance(services: Services) -> None:
    """Housekeeping that must happen even if nobody asks: abandon stale issuance intents
    (architecture §3) and keep every CA generation's OCSP responder certificate fresh."""
    from jpki.ca import CeremonyReport

    actor = Principal(actor="service:maintenance", role=None)
    abandoned = services.issuance.abandon_stale(
        actor, timedelta(seconds=services.settings.pending_timeout_seconds))
    if abandoned:
        log.warning("abandoned %d stale issuance intents", len(abandoned))
    undelivered = services.counter.sweep_undelivered(actor)
    if undelivered:
        log.warning("revoked %d certificates never delivered to a card", len(undelivered))
    report = CeremonyReport()
    services.cas.ensure_responders(actor, report)
    if report.created:
        services.ocsp.reload()
    due = services.crls.due()
    for kind in ("full", "delta"):
        scopes = [scope for scope, k in due if k == kind]
        if scopes:
            services.crls.publish_many(scopes, kinds=(kind,))


def _maintenance_lock(data_dir: Path) -> IO[bytes] | None:
    """An exclusive lock on ``<data>/maintenance.lock``, or None if another process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "maintenance.lock").open("a+b")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def create_app(settings: Settings | None = None, services: Services | None = None) -> JpkiApp:
    settings = settings or Settings()
    owned = services is None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc: Services = services if services is not None else await run_in_threadpool(
            build_services, settings)
        app.state.services = svc
        # With several workers, one of them (whoever holds the lock) does the housekeeping.
        lock = _maintenance_lock(svc.settings.resolved_data_dir)
        if lock is not None:
            await run_in_threadpool(maintenance, svc)

        async def loop() -> None:
            while lock is not None:
                await asyncio.sleep(MAINTENANCE_SECONDS)
                try:
                    await run_in_threadpool(maintenance, svc)
                except Exception as exc:  # keep serving; report the type only
                    log.error("maintenance failed: %s", type(exc).__name__)

        # Before the first request: responses stored before this process started are
        # reconciled with the status changes recorded meanwhile (jpki.status_feed). Should it
        # fail (the database is down), the responder reconciles before it serves a stored
        # response, or answers internalError.
        try:
            await run_in_threadpool(svc.ocsp.refresh)
        except Exception as exc:  # keep starting; report the type only
            log.error("OCSP reconciliation at start failed: %s", type(exc).__name__)

        async def ocsp_refresh() -> None:
            while True:
                # The "within one second" promised for revocations, with room for re-signing.
                await asyncio.sleep(POLL_SECONDS)
                try:
                    await run_in_threadpool(svc.ocsp.refresh)
                except Exception as exc:  # keep serving; report the type only
                    log.error("OCSP refresh failed: %s", type(exc).__name__)

        tasks = [asyncio.create_task(loop()), asyncio.create_task(ocsp_refresh())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if lock is not None:
                lock.close()
            if owned:
                svc.close()

    app = JpkiApp(title="jpki", version=__version__, lifespan=lifespan,
                  description="Certificate authority for national ID cards in the style of "
                              "JPKI: issuance, renewal, revocation, residents, cards.")
    if services is not None:
        app.state.services = services
    app.ocsp_endpoint = OcspEndpoint(lambda: app.state.services.ocsp)
    app.auth_guard = AuthGuard(lambda: app.state.services.auth_throttle)
    problems.install(app)
    app.include_router(public.router)
    app.include_router(crl.router)
    app.include_router(residents.router)
    app.include_router(cards.router)
    app.include_router(certificates.router)
    app.include_router(counter.router)
    app.include_router(mobile.router)
    app.include_router(relying_parties.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Outside the body guard, so that its refusals on the relying-party routes are audited too.
    app.add_middleware(RefusalAudit, services=lambda: app.state.services)
    return app
