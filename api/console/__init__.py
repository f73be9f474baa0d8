"""The operator console: pages served by `jpki serve` under /console for the people who run the
system (api.console.pages: signing in, each role's home, the registry; api.console.call_centre:
the call centre)."""

from __future__ import annotations

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the console's pages and its static files to ``app``."""
    from api.console import call_centre, pages

    app.include_router(pages.router)
    app.include_router(call_centre.router)
    app.mount("/console/static", pages.static, name="console-static")
