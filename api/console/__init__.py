"""The operator console: pages served by `jpki serve` under /console for the people who run the
system (api.console.pages: signing in, each role's home; api.console.registry: the counter's
registry pages; api.console.counter: its issuance desk (the proofing guide, delivery, a new
card); api.console.call_centre: the call centre;
api.console.dashboard: the supervisor's dashboard)."""

from __future__ import annotations

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the console's pages and its static files to ``app``."""
    from api.console import (
        admin,
        call_centre,
        counter,
        dashboard,
        dv,
        pages,
        registry,
        stations,
        sweeps,
    )

    app.include_router(pages.router)
    app.include_router(registry.router)
    app.include_router(counter.router)
    app.include_router(call_centre.router)
    app.include_router(dashboard.router)
    app.include_router(dv.router)
    app.include_router(admin.router)
    app.include_router(stations.router)
    app.include_router(sweeps.router)
    app.mount("/console/static", pages.static, name="console-static")
