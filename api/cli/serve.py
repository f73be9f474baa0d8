"""`jpki init` and `jpki serve`: the CA's key ceremony and database, and its HTTP server."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    escape,
    fail,
    grant,
    open_services,
    out,
    print_json,
)
from jpki.access.authz import Operation

if TYPE_CHECKING:
    from jpki.settings import Settings

# Two top-level commands of the root (api.cli.COMMANDS), not a group.
app = typer.Typer(add_completion=False)


@app.command()
def init(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Create the SoftHSM token, run the key ceremony, create or migrate the database.

    Idempotent: a second run changes nothing and says so.
    """
    with open_services(data_dir, as_json, init=True) as services:
        report = services.cas.ceremony(grant(Operation.CA_CEREMONY))
        if as_json:
            print_json({"data_dir": str(services.settings.resolved_data_dir),
                        "created": report.created, "unchanged": report.unchanged})
            return
        out.print(f"data directory: {escape(str(services.settings.resolved_data_dir))}")
        for line in report.created:
            out.print(f"[green]created[/]   {line}")
        for line in report.unchanged:
            out.print(f"[dim]unchanged[/] {line}")
        if not report.changed:
            out.print("nothing to do: already initialised")


def uvicorn_options(settings: Settings, host: str, port: int, access_log: bool,
                    log_settings: dict[str, Any]) -> dict[str, Any]:
    """How `jpki serve` runs uvicorn (and the benches' own servers, to measure the same)."""
    import functools

    from api.http_protocol import BoundedHttpToolsProtocol, HttpLimits

    limits = HttpLimits(max_header_bytes=settings.http_max_header_bytes,
                        read_timeout=settings.http_read_timeout_seconds,
                        max_connections=settings.http_max_connections)
    return {
        "host": host, "port": port, "log_config": log_settings, "access_log": access_log,
        # Uvicorn builds one protocol per connection from this (a partial, not a class: it
        # carries the limits, and pickles for worker processes).
        "http": functools.partial(BoundedHttpToolsProtocol, limits=limits),
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
    }


@app.command()
def serve(data_dir: DataDir = DEFAULT_DATA_DIR,
          host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
          workers: Annotated[int, typer.Option(
              help="Worker processes (each with its own HSM sessions and OCSP cache).")] = 1,
          access_log: Annotated[bool, typer.Option(
              help="Add uvicorn's access log (path without query), which also logs OCSP "
                   "requests. Off by default: at OCSP rates it halves throughput and writes what "
                   "each client asked about. Other requests are always logged, a JSON line each."
          )] = False,
          max_header_bytes: Annotated[int | None, typer.Option(
              help="Largest request head, in bytes; beyond it 431 [default: "
                   "$JPKI_HTTP_MAX_HEADER_BYTES, then 16384].")] = None,
          read_timeout: Annotated[float | None, typer.Option(
              help="Seconds a request head may take to arrive, and a body may pause; then 408 "
                   "[default: $JPKI_HTTP_READ_TIMEOUT_SECONDS, then 10].")] = None,
          keep_alive_timeout: Annotated[int | None, typer.Option(
              help="Seconds an idle keep-alive connection is kept [default: "
                   "$JPKI_HTTP_KEEP_ALIVE_SECONDS, then 5].")] = None,
          max_connections: Annotated[int | None, typer.Option(
              help="Open connections at most, per worker; beyond them 503 [default: "
                   "$JPKI_HTTP_MAX_CONNECTIONS, then 1000].")] = None,
          ) -> None:
    """Serve the REST API, OCSP and CRLs with uvicorn; logs are JSON lines on stderr. Request
    heads, slow clients and connections are limited (api.http_protocol); in production it
    belongs behind a proxy (README, "In production").

    Without JPKI_BASE_URL the URLs written into certificates and CRLs name the address served
    (a wildcard --host such as 0.0.0.0 as 127.0.0.1); with it, it wins, and a disagreement with
    --host/--port is logged once.
    """
    import logging
    import logging.config
    import os

    import uvicorn
    from pydantic import ValidationError

    from api.logs import log_config
    from jpki.settings import Settings

    given: dict[str, Any] = {"http_max_header_bytes": max_header_bytes,
                             "http_read_timeout_seconds": read_timeout,
                             "http_keep_alive_seconds": keep_alive_timeout,
                             "http_max_connections": max_connections}
    try:
        settings, warning = Settings(data_dir=data_dir, **{
            k: v for k, v in given.items() if v is not None}).for_server(host, port)
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors())
        fail("request.invalid", f"out of range: {fields}", False)
    if settings.user_pin() is None:
        fail("ca.not_initialised", f"run `jpki init --data-dir {data_dir}` first", False)
    if workers < 1:
        fail("request.invalid", "--workers is at least 1", False)
    # Every logger, uvicorn's and the service's, writes JSON lines (api.logs); configured before
    # the warning so that it appears in the log like every other line, once (not per worker).
    log_settings = log_config()
    logging.config.dictConfig(log_settings)
    if warning is not None:
        logging.getLogger("jpki.serve").warning("%s", warning)
    options = uvicorn_options(settings, host, port, access_log, log_settings)
    if workers == 1:
        from api.app import create_app

        uvicorn.run(create_app(settings), **options)
        return
    # Worker processes build their own app from the environment (settings are never shared
    # between processes: the HSM library must be initialised in each).
    os.environ["JPKI_DATA_DIR"] = str(settings.resolved_data_dir)
    os.environ["JPKI_BASE_URL"] = settings.public_base_url
    # prometheus-client's multiprocess mode: every worker writes its metrics to files in this
    # directory (read when it is imported, so set before the workers start), and the one
    # answering a scrape adds them up (api.metrics). Emptied first: an earlier run's counts
    # must not be added to this one's.
    from api.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

    metrics_dir = Path(os.environ.get(MULTIPROC_ENV) or
                       settings.resolved_data_dir / "metrics")
    prepare_multiprocess_dir(metrics_dir)
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    uvicorn.run("api.app:create_app", factory=True, workers=workers, **options)
