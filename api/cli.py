"""The operator CLI, `jpki` (typer + rich).

Scripts depend on these command names and options (docs/architecture.md §1); keep them stable. Every
command takes ``--data-dir`` (default ``$JPKI_DATA_DIR``, then ``./var``). Results go to stdout
(``--json`` for machines); errors go to stderr as ``error: <code>: <detail>`` (or a JSON object
with ``--json``) with a non-zero exit status.

The CLI acts as the local operator: whoever can read the data directory (and so the HSM PIN)
already holds every power the CA has, so it is not asked for API credentials — but everything it
changes is audited under ``cli:<user>``.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from api.cli_card import emulate, issuer_key
from api.cli_phone import phone_app
from api.cli_rp import rp_app
from api.cli_station import station_app
from api.composition import Services, build_services
from hsm.errors import HsmError
from jpki.access.authz import Grant, Operation, authorize
from jpki.access.principals import Principal
from jpki.errors import InvalidInput, JpkiError
from jpki.issuance.service import KeyRequest
from jpki.lifecycle.audit_state import StateReport, verify_state
from jpki.lifecycle.cards import CardSpec
from jpki.model import CaKind, CertKind, ClientRole, ClientStatus, RevocationReason
from jpki.registry.cards import CardEvent
from jpki.registry.residents import EventKind, ResidentEvent
from jpki.serials import parse_serial
from jpki.settings import Settings

app = typer.Typer(help="jpki: a national PKI in the style of JPKI (公的個人認証サービス).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
resident_app = typer.Typer(help="Residents and resident-registry events.", no_args_is_help=True)
cert_app = typer.Typer(help="Issue, renew, revoke and show certificates.", no_args_is_help=True)
card_app = typer.Typer(help="Cards: register, lost / found / returned.", no_args_is_help=True)
client_app = typer.Typer(help="API clients (operators, stations, call centre, RPs).",
                         no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
ca_app = typer.Typer(help="CA generations.", no_args_is_help=True)
app.add_typer(resident_app, name="resident")
app.add_typer(cert_app, name="cert")
app.add_typer(card_app, name="card")
app.add_typer(client_app, name="client")
app.add_typer(audit_app, name="audit")
app.add_typer(ca_app, name="ca")
crl_app = typer.Typer(help="Certificate revocation lists.", no_args_is_help=True)
ocsp_app = typer.Typer(help="The OCSP responder's pre-signed responses.", no_args_is_help=True)
app.add_typer(crl_app, name="crl")
app.add_typer(ocsp_app, name="ocsp")
mobile_app = typer.Typer(help="Smartphone certificates.", no_args_is_help=True)
app.add_typer(mobile_app, name="mobile")
app.add_typer(rp_app, name="rp")
app.add_typer(station_app, name="station")
app.add_typer(phone_app, name="phone")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="JPKI_DATA_DIR",
                                       help="Data directory (SQLite, SoftHSM token, secrets).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DEFAULT_DATA_DIR = Path("var")


P = TypeVar("P", bound=Operation)


def _actor() -> Principal:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal.local_operator(user)


def _grant(operation: P) -> Grant[P]:
    """The local operator's grant for ``operation``, by the table of jpki.access.authz (it
    lists what the CLI may do, architecture §1)."""
    return authorize(_actor(), operation)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return None
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(_jsonable(data), ensure_ascii=False, indent=2) + "\n")


def _fail(code: str, detail: str, as_json: bool) -> NoReturn:
    if as_json:
        sys.stderr.write(json.dumps({"error": {"code": code, "detail": detail}},
                                    ensure_ascii=False) + "\n")
    else:
        # Details can carry paths and other text with brackets: never let rich read them as markup.
        err.print(f"[bold red]error:[/] {escape(code)}: {escape(detail)}")
    raise typer.Exit(1)


@contextmanager
def _services(data_dir: Path, as_json: bool, *, init: bool = False) -> Iterator[Services]:
    services: Services | None = None
    try:
        settings = Settings(data_dir=data_dir)
        services = build_services(settings, init=init)
        yield services
    except JpkiError as exc:
        _fail(exc.code, exc.detail, as_json)
    except HsmError as exc:
        _fail("hsm.error", str(exc), as_json)
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        # A bug or a broken component (database, disk). Its message can quote SQL parameters — the
        # basic 4 information among them — so, as in the API's logs, only the type is shown.
        kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
        _fail("internal", f"unexpected {kind}; its message is withheld because it may quote "
              "personal data", as_json)
    finally:
        if services is not None:
            services.close()


T = TypeVar("T")


def _parse(fn: Callable[[str], T], text: str, what: str, as_json: bool) -> T:
    try:
        return fn(text)
    except JpkiError as exc:
        _fail(exc.code, exc.detail, as_json)  # keep the specific code (serial.invalid, …)
    except ValueError:
        _fail("request.invalid", f"invalid {what}", as_json)


def _date(text: str) -> date:
    return date.fromisoformat(text)


# --- init / serve -------------------------------------------------------------------------


@app.command()
def init(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Create the SoftHSM token, run the key ceremony, create or migrate the database.

    Idempotent: a second run changes nothing and says so.
    """
    with _services(data_dir, as_json, init=True) as services:
        report = services.cas.ceremony(_grant(Operation.CA_CEREMONY))
        if as_json:
            _print_json({"data_dir": str(services.settings.resolved_data_dir),
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

    given: dict[str, Any] = {"http_max_header_bytes": max_header_bytes,
                             "http_read_timeout_seconds": read_timeout,
                             "http_keep_alive_seconds": keep_alive_timeout,
                             "http_max_connections": max_connections}
    try:
        settings, warning = Settings(data_dir=data_dir, **{
            k: v for k, v in given.items() if v is not None}).for_server(host, port)
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors())
        _fail("request.invalid", f"out of range: {fields}", False)
    if settings.user_pin() is None:
        _fail("ca.not_initialised", f"run `jpki init --data-dir {data_dir}` first", False)
    if workers < 1:
        _fail("request.invalid", "--workers is at least 1", False)
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


# --- residents ----------------------------------------------------------------------------


@resident_app.command("add")
def resident_add(
    name: Annotated[str, typer.Option(help="Surname and given name, space-separated.")],
    birth: Annotated[str, typer.Option(help="Date of birth, YYYY-MM-DD.")],
    sex: Annotated[int, typer.Option(help="1 male, 2 female, 3 unknown.")],
    address: Annotated[str, typer.Option(help="Address from the prefecture on.")],
    municipality: Annotated[str, typer.Option(help="6-digit local government code.")],
    dv_support: Annotated[bool, typer.Option("--dv-support", help="DV support measures.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Register a resident; prints the resident's id."""
    birth_date = _parse(_date, birth, "date of birth", as_json)
    with _services(data_dir, as_json) as services:
        resident = services.residents.register(
            _grant(Operation.RESIDENT_REGISTER), name=name, birth_date=birth_date, sex=sex,
            address=address, municipality_code=municipality, dv_support=dv_support)
        if as_json:
            _print_json({"id": resident.id})
        else:
            out.print(resident.id)


@resident_app.command("event")
def resident_event(
    resident: Annotated[str, typer.Option(help="Resident id.")],
    kind: Annotated[EventKind, typer.Option(help="What happened.")],
    address: Annotated[str | None, typer.Option(help="New address.")] = None,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    sex: Annotated[int | None, typer.Option(help="New sex code.")] = None,
    birth: Annotated[str | None, typer.Option(help="Corrected date of birth.")] = None,
    event_date: Annotated[str | None, typer.Option("--date",
                                                   help="Date of death or departure.")] = None,
    municipality: Annotated[str | None, typer.Option(help="New municipality code.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Record a registry event (move, name change, death, emigration …)."""
    event = ResidentEvent(
        kind=kind, address=address, name=name, sex=sex,
        birth_date=_parse(_date, birth, "date", as_json) if birth else None,
        date=_parse(_date, event_date, "date", as_json) if event_date else None,
        municipality_code=municipality)
    with _services(data_dir, as_json) as services:
        outcome = services.residents.record_event(_grant(Operation.RESIDENT_EVENT), resident,
                                                  event)
        result = {"resident": outcome.resident.id, "changed": outcome.changed,
                  "revoked": [{"serial": r.serial, "reason": r.reason.rfc_name,
                               "revoked_at": r.revoked_at} for r in outcome.revocations]}
        if as_json:
            _print_json(result)
        else:
            out.print(f"{kind.value}: {'recorded' if outcome.changed else 'no change'}; "
                      f"revoked {len(outcome.revocations)} certificate(s)")
            for r in outcome.revocations:
                out.print(f"  {r.serial} {r.reason.rfc_name} at {r.revoked_at.isoformat()}")


@resident_app.command("show")
def resident_show(resident: Annotated[str, typer.Option(help="Resident id.")],
                  data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Show a resident's record status and certificates (no personal data)."""
    with _services(data_dir, as_json) as services:
        r = services.residents.get(_grant(Operation.RESIDENT_READ), resident)
        with services.uow() as uow:
            certs = [c.serial for c in uow.certificates.for_resident(r.id)]
        views = [services.certificates.show(_grant(Operation.CERTIFICATE_READ), s) for s in certs]
        data = {"id": r.id, "municipality": r.municipality_code,
                "registry_source": r.registry_source, "status": r.status,
                "dv_support": r.dv_support, "emigrated_on": r.emigrated_on,
                "certificates": views}
        if as_json:
            _print_json(data)
        else:
            out.print(f"{r.id} {r.status.value} municipality {r.municipality_code}")
            for view in views:
                out.print(f"  {view.serial} {view.kind} {view.status} until "
                          f"{view.not_after.isoformat()}")


# --- certificates -------------------------------------------------------------------------

_KINDS = {"sign": CertKind.CARD_SIGN, "auth": CertKind.CARD_AUTH}


def _read_key(path: Path, as_json: bool) -> bytes:
    try:
        data = path.read_bytes()
    except OSError:
        _fail("public_key.unreadable", f"cannot read {path}", as_json)
    return data


def _write_pem(path: Path, der: bytes) -> None:
    path.write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))


def _check_out(path: Path, as_json: bool) -> None:
    """Refuse an --out that cannot be written *before* anything is issued, so that a typo does not
    leave a signed certificate the operator never received."""
    parent = path.parent
    if (path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK)
            or (path.exists() and not os.access(path, os.W_OK))):
        _fail("output.unwritable", f"cannot write {path}", as_json)


@cert_app.command("issue")
def cert_issue(
    resident: Annotated[str, typer.Option(help="Resident id.")],
    kind: Annotated[str, typer.Option(help="sign or auth.")],
    public_key: Annotated[Path, typer.Option(help="SubjectPublicKeyInfo, PEM or DER.")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the certificate PEM.")],
    card_expiry: Annotated[str | None, typer.Option(help="Card expiry, YYYY-MM-DD.")] = None,
    card: Annotated[str | None, typer.Option(help="Card number.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Issue a card signing or auth certificate for a key the card generated."""
    cert_kind = _KINDS.get(kind)
    if cert_kind is None:
        _fail("request.invalid", "--kind is sign or auth", as_json)
    key = _read_key(public_key, as_json)
    _check_out(out_path, as_json)
    spec = CardSpec(number=card, expires_on=_parse(_date, card_expiry, "date", as_json)
                    if card_expiry else None)
    with _services(data_dir, as_json) as services:
        issued = services.issuance.issue(_grant(Operation.CERTIFICATE_ISSUE), resident,
                                         [KeyRequest(cert_kind, key)], spec)
        _report_issued(services, issued[0].serial, issued[0].der, out_path, as_json)


@cert_app.command("renew")
def cert_renew(
    serial: Annotated[str, typer.Option(help="Serial of the certificate to renew (hex).")],
    public_key: Annotated[Path, typer.Option(help="The card's new public key.")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the certificate PEM.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Renew a certificate (from 3 months before expiry); the old one is superseded."""
    canonical = _parse(parse_serial, serial, "serial", as_json)
    key = _read_key(public_key, as_json)
    _check_out(out_path, as_json)
    with _services(data_dir, as_json) as services:
        issued = services.issuance.renew_serial(_grant(Operation.CERTIFICATE_RENEW), canonical, key)
        _report_issued(services, issued.serial, issued.der, out_path, as_json)


def _report_issued(services: Services, serial: str, der: bytes, out_path: Path,
                   as_json: bool) -> None:
    try:
        _write_pem(out_path, der)
    except OSError:
        _fail("output.unwritable", f"certificate {serial} was issued but {out_path} could not be "
              f"written; `jpki cert show --serial {serial} --json` prints its PEM", as_json)
    view = services.certificates.show(_grant(Operation.CERTIFICATE_READ), serial)
    if as_json:
        data = _jsonable(view)
        data["out"] = str(out_path)
        _print_json(data)
    else:
        out.print(f"issued {view.kind} {view.serial} valid to {view.not_after.isoformat()} "
                  f"→ {escape(str(out_path))}")


@cert_app.command("revoke")
def cert_revoke(
    serial: Annotated[str, typer.Option(help="Serial (hex).")],
    reason: Annotated[str, typer.Option(help="RFC 5280 reason, e.g. keyCompromise.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Revoke a certificate. Idempotent."""
    canonical = _parse(parse_serial, serial, "serial", as_json)
    parsed = _parse(RevocationReason.parse, reason, "reason", as_json)
    with _services(data_dir, as_json) as services:
        result = services.revocation.revoke(_grant(Operation.CERTIFICATE_REVOKE), canonical, parsed)
        if as_json:
            _print_json({"serial": result.serial, "reason": result.reason.rfc_name,
                         "revoked_at": result.revoked_at, "changed": result.changed})
        else:
            state = "revoked" if result.changed else "already revoked"
            out.print(f"{result.serial} {state}: {result.reason.rfc_name} at "
                      f"{result.revoked_at.isoformat()}")


@cert_app.command("show")
def cert_show(serial: Annotated[str, typer.Option(help="Serial (hex).")],
              data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Show a certificate's status, validity, revocation and linkage."""
    canonical = _parse(parse_serial, serial, "serial", as_json)
    with _services(data_dir, as_json) as services:
        view = services.certificates.show(_grant(Operation.CERTIFICATE_READ), canonical)
        if as_json:
            data = _jsonable(view)
            if view.der:
                data["pem"] = x509.load_der_x509_certificate(view.der).public_bytes(
                    Encoding.PEM).decode("ascii")
            _print_json(data)
        else:
            table = Table(show_header=False)
            for key, value in _jsonable(view).items():
                if value is not None:
                    table.add_row(key, str(value))
            out.print(table)


@cert_app.command("reconcile")
def cert_reconcile(
    older_than: Annotated[int, typer.Option(help="Seconds a pending intent may wait.")] = 300,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Abandon issuance intents that never completed (they are then reported as revoked)."""
    with _services(data_dir, as_json) as services:
        serials = services.issuance.abandon_stale(_grant(Operation.PENDING_ABANDON),
                                                  timedelta(seconds=older_than))
        if as_json:
            _print_json({"abandoned": serials})
        else:
            out.print(f"abandoned {len(serials)} pending intent(s)")


# --- cards --------------------------------------------------------------------------------


@card_app.command("add")
def card_add(resident: Annotated[str, typer.Option(help="Resident id.")],
             expiry: Annotated[str | None, typer.Option(help="Expiry, YYYY-MM-DD.")] = None,
             number: Annotated[str | None, typer.Option(help="Card number.")] = None,
             data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Register a new card; an active previous card is replaced and its certificates revoked."""
    spec = CardSpec(number=number,
                    expires_on=_parse(_date, expiry, "date", as_json) if expiry else None)
    with _services(data_dir, as_json) as services:
        outcome = services.cards.register(_grant(Operation.CARD_REGISTER), resident, spec)
        data = {"number": outcome.card.number, "expires_on": outcome.card.expires_on,
                "revoked": [r.serial for r in outcome.revocations]}
        _print_json(data) if as_json else out.print(f"card {outcome.card.number}")


@card_app.command("event")
def card_event(number: Annotated[str, typer.Option(help="Card number.")],
               kind: Annotated[CardEvent, typer.Option(help="lost, found or returned.")],
               data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Record a card's loss (hold), finding (revoke) or return (revoke)."""
    with _services(data_dir, as_json) as services:
        outcome = services.cards.record_event(_grant(Operation.CARD_EVENT), number, kind)
        data = {"number": outcome.card.number, "status": outcome.card.status,
                "revoked": [{"serial": r.serial, "reason": r.reason.rfc_name}
                            for r in outcome.revocations]}
        if as_json:
            _print_json(data)
        else:
            out.print(f"card {outcome.card.number}: {outcome.card.status.value}; "
                      f"{len(outcome.revocations)} certificate(s) changed")


card_app.command("emulate")(emulate)
card_app.command("issuer-key")(issuer_key)


# --- clients ------------------------------------------------------------------------------


@client_app.command("add")
def client_add(name: Annotated[str, typer.Option(help="A name for the client.")],
               role: Annotated[ClientRole, typer.Option(help="Role.")],
               scopes: Annotated[str, typer.Option(help="Comma-separated scopes.")] = "",
               station_kind: Annotated[str | None, typer.Option(
                   help="Stations: counter (default) or post_office (needs the "
                        "municipality:<code> scopes of the municipalities that designated it)."
               )] = None,
               data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Create an API client; prints its client_id and client_secret once."""
    with _services(data_dir, as_json) as services:
        new = services.clients.create(_grant(Operation.CLIENT_CREATE), name=name, role=role,
                                      scopes=[s for s in scopes.split(",") if s.strip()],
                                      station_kind=station_kind)
        data = {"client_id": new.client.client_id, "client_secret": new.client_secret,
                "role": role, "scopes": new.client.scopes.split(),
                "station_kind": new.client.station_kind}
        if as_json:
            _print_json(data)
        else:
            out.print(f"client_id:     {new.client.client_id}")
            out.print(f"client_secret: {new.client_secret}")
            out.print("[dim]the secret is shown once; only a hash is kept[/]")


@client_app.command("suspend")
def client_suspend(client_id: Annotated[str, typer.Option(help="Client id.")],
                   data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Suspend a client: its requests are refused at once."""
    with _services(data_dir, as_json) as services:
        services.clients.set_status(_grant(Operation.CLIENT_SET_STATUS), client_id,
                                    ClientStatus.SUSPENDED)
        _print_json({"client_id": client_id, "status": "suspended"}) if as_json else \
            out.print(f"{client_id} suspended")


@client_app.command("resume")
def client_resume(client_id: Annotated[str, typer.Option(help="Client id.")],
                  data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Lift a client's suspension."""
    with _services(data_dir, as_json) as services:
        services.clients.set_status(_grant(Operation.CLIENT_SET_STATUS), client_id,
                                    ClientStatus.ACTIVE)
        _print_json({"client_id": client_id, "status": "active"}) if as_json else \
            out.print(f"{client_id} active")


# --- audit --------------------------------------------------------------------------------


def _head(text: str) -> tuple[int, str]:
    seq, sep, mac = text.strip().partition(":")
    # A negative or non-hex head would be accepted and then check nothing.
    if (not sep or not (seq.isascii() and seq.isdigit()) or len(mac) != 64
            or any(c not in "0123456789abcdef" for c in mac.lower())):
        raise InvalidInput("--expect-head is SEQ:MAC as printed by `jpki audit verify`")
    return int(seq), mac.lower()


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[str | None, typer.Option(
        help="A head (SEQ:MAC) recorded earlier; detects a rollback of the whole log.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
    state: Annotated[bool, typer.Option(
        "--state", help="Also replay the log against the certificates: each one's status, "
        "revocation and hold release must be what its last audited transition says.")] = False,
) -> None:
    """Verify the audit chain: any changed, inserted or deleted record fails; with --state,
    also every certificate against what the log says of it."""
    expected = _parse(_head, expect_head, "head", as_json) if expect_head else None
    # One snapshot for the chain and the state, so both describe the same moment.
    with _services(data_dir, as_json) as services, services.snapshots() as uow:
        report = services.audit.verify(uow, expected)
        replayed = verify_state(uow) if state else None
        data: dict[str, Any] = {"ok": True, "records": report.records,
                                "head": f"{report.head_seq}:{report.head_mac}"}
        if replayed is not None:
            data.update(ok=replayed.ok, state=replayed.as_dict())
        if as_json:
            _print_json(data)
        else:
            out.print(f"audit chain OK: {report.records} records; head "
                      f"{report.head_seq}:{report.head_mac}")
            if replayed is not None:
                _print_state(replayed)
        if replayed is not None:
            replayed.raise_if_mismatched()  # reported as audit.state_mismatch, exit 1


def _print_state(report: StateReport) -> None:
    out.print(("certificate state OK: " if report.ok else "certificate state differs: ")
              + report.summary())
    for field, count in sorted(report.not_checkable.items()):
        out.print(f"  {field} of {count} certificates: not checkable from the log (older "
                  "records)")
    for m in report.mismatches:
        out.print(escape(f"  {m.serial} {m.field}: expected {m.expected}, found {m.found}"))
    for u in report.unrecorded:
        out.print(escape(f"  {u.serial} ({u.status}): no {', '.join(u.missing)} record"))
    for w in report.without_row:
        out.print(escape(f"  {w.serial}: no row (last recorded: {w.last_action}, "
                         f"record {w.seq})"))


# --- CA generations -----------------------------------------------------------------------


@ca_app.command("rollover")
def ca_rollover(ca: Annotated[CaKind, typer.Option(help="sign or auth.")],
                data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Add a CA generation (same DN, new key); earlier ones stay valid for what they issued."""
    with _services(data_dir, as_json) as services:
        gen = services.cas.rollover(_grant(Operation.CA_ROLLOVER), ca)
        data = {"ca": gen.ca, "generation": gen.generation, "key_label": gen.key_label,
                "not_after": gen.not_after}
        _print_json(data) if as_json else out.print(
            f"{gen.ca.value} CA generation {gen.generation} ({gen.key_label})")


@ca_app.command("list")
def ca_list(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """List CA generations."""
    with _services(data_dir, as_json) as services:
        generations = services.cas.generations()
        if as_json:
            _print_json([{"ca": g.ca, "generation": g.generation, "key_label": g.key_label,
                          "not_before": g.not_before, "not_after": g.not_after}
                         for g in generations])
            return
        table = Table("CA", "generation", "key", "not before", "not after")
        for g in generations:
            table.add_row(g.ca.value, str(g.generation), g.key_label, g.not_before.isoformat(),
                          g.not_after.isoformat())
        out.print(table)


@ca_app.command("export")
def ca_export(out_dir: Annotated[Path, typer.Option("--out", help="Directory for PEM files.")],
              data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Write every CA generation and OCSP responder certificate as PEM (for openssl etc.)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        _fail("output.unwritable", f"cannot create {out_dir}", as_json)
    written = []
    with _services(data_dir, as_json) as services, services.uow() as uow:
        try:
            for gen in uow.cas.generations():
                path = out_dir / f"{gen.ca.value}-ca-g{gen.generation:02d}.pem"
                _write_pem(path, gen.certificate_der)
                written.append(str(path))
                for responder in uow.cas.responders(gen.id or 0)[-1:]:
                    rpath = out_dir / f"{gen.ca.value}-ocsp-g{gen.generation:02d}.pem"
                    _write_pem(rpath, responder.certificate_der)
                    written.append(str(rpath))
        except OSError:
            _fail("output.unwritable", f"cannot write into {out_dir}", as_json)
    if as_json:
        _print_json({"written": written})
    else:
        for w in written:
            out.print(escape(w))


# --- revocation services ------------------------------------------------------------------


@crl_app.command("publish")
def crl_publish(
    shard: Annotated[list[str] | None, typer.Option(
        help="Only these shards (municipality codes, or arl); repeatable.")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Also copy the CRLs here as <ca>/gNN/<shard>.crl, -delta.crl, arl.crl.")
    ] = None,
    delta_only: Annotated[bool, typer.Option("--delta", help="Only delta CRLs.")] = False,
    workers: Annotated[int, typer.Option(help="Shards generated in parallel.")] = 4,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Generate, sign (in the HSM) and publish full and delta CRLs of every shard, and ARLs."""
    import shutil

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    kinds = ("delta",) if delta_only else ("full", "delta")
    if out_dir is not None:
        _check_writable_dir(out_dir, as_json)
    with _services(data_dir, as_json) as services:
        scopes = services.crls.scopes(shard)
        total = sum(len(kinds) if not s.is_arl else (0 if delta_only else 1) for s in scopes)
        written: list[dict[str, Any]] = []
        progress = Progress("[progress.description]{task.description}", BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                            disable=as_json or total < 20, transient=True)
        with progress:
            task = progress.add_task("publishing CRLs", total=total)

            def done(scope: Any, publication: Any) -> None:
                progress.advance(task)
                path = services.crls.directory / publication.path
                entry = {"ca": scope.generation.ca.value, "generation": scope.generation.generation,
                         "scope": scope.name, "kind": publication.kind,
                         "number": publication.number, "entries": publication.entries,
                         "this_update": publication.this_update,
                         "next_update": publication.next_update, "sha256": publication.sha256,
                         "path": str(path)}
                if out_dir is not None:
                    from jpki.revocation.crls import file_name

                    target = (out_dir / scope.generation.ca.value /
                              f"g{scope.generation.generation:02d}" /
                              file_name(scope.name, publication.kind))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
                    entry["path"] = str(target)
                written.append(entry)

            services.crls.publish_many(scopes, kinds=kinds, workers=workers, progress=done)
        written.sort(key=lambda e: (e["ca"], e["generation"], e["scope"], e["kind"]))
        if as_json:
            _print_json({"written": written})
        else:
            for e in written:
                out.print(f"{e['ca']}/g{e['generation']:02d}/{e['scope']} {e['kind']} "
                          f"#{e['number']} {e['entries']} entries → {escape(e['path'])}")


def _check_writable_dir(path: Path, as_json: bool) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".jpki-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        _fail("output.unwritable", f"cannot write to {path}", as_json)


@ocsp_app.command("presign")
def ocsp_presign(
    algorithm: Annotated[str, typer.Option(help="CertID hash: sha1 (RFC 5019) or sha256.")
                         ] = "sha1",
    limit: Annotated[int | None, typer.Option(help="At most this many certificates.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Sign OCSP responses ahead of time for every issued certificate that has none fresh."""
    if algorithm not in ("sha1", "sha256"):
        _fail("request.invalid", "--algorithm is sha1 or sha256", as_json)
    with _services(data_dir, as_json) as services:
        count = services.ocsp.presign_missing(algorithm, limit=limit)
        _print_json({"signed": count}) if as_json else out.print(
            f"signed {count} OCSP response(s) ahead of time")


@ocsp_app.command("verify")
def ocsp_verify(
    check_only: Annotated[bool, typer.Option(
        "--check-only", help="Report only; re-sign nothing, and exit non-zero on a finding.")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Compare every stored OCSP response with the store (status, revocation time and reason,
    CertID, signature) and re-sign each that contradicts it."""
    with _services(data_dir, as_json) as services:
        check = services.ocsp.verify_stored(repair=not check_only)
    findings = [{"serial": f.serial, "hash_algorithm": f.hash_algorithm,
                 "ca_generation_id": f.ca_generation_id, "why": f.why} for f in check.findings]
    if check_only and check.contradicted:
        _fail("ocsp.responses_contradict_store",
              f"{check.contradicted} of {check.checked} stored OCSP response(s) contradict the "
              "store: run `jpki ocsp verify` without --check-only to re-sign them"
              + "".join(f"; {f['serial']} ({f['hash_algorithm']}): {f['why']}"
                        for f in findings[:5]), as_json)
    if as_json:
        _print_json({"checked": check.checked, "expired": check.expired,
                     "contradicted": check.contradicted, "resigned": check.resigned,
                     "findings": findings})
        return
    out.print(f"checked {check.checked} stored OCSP response(s) ({check.expired} expired, "
              f"skipped): {check.contradicted} contradicted the store, {check.resigned} "
              "re-signed")
    for f in findings:
        out.print(f"  {f['serial']} ({f['hash_algorithm']}, generation "
                  f"{f['ca_generation_id']}): {f['why']}")


@app.command()
def jobs(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """The background jobs of `jpki serve`: when each last ran, how long it took, what it did."""
    with _services(data_dir, as_json) as services:
        runs = services.jobs.runs()
        if as_json:
            _print_json({"jobs": runs})
            return
        if not runs:
            out.print("no job has run yet (they run in `jpki serve`)")
            return
        table = Table("job", "last run", "took", "outcome", "did", "runs", "failures",
                      "last success")
        for r in runs:
            did = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
            outcome = r.outcome if r.error is None else f"{r.outcome} ({r.error})"
            table.add_row(r.job, r.started_at.isoformat(), f"{r.duration_ms} ms", outcome, did,
                          str(r.runs), str(r.failures),
                          r.last_success_at.isoformat() if r.last_success_at else "never")
        out.print(table)


@mobile_app.command("sweep")
def mobile_sweep(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """重層的な措置: revoke mobile certificates whose card certificate is no longer valid or
    whose resident record has ended; flag devices that have not checked in for long."""
    with _services(data_dir, as_json) as services:
        report = services.mobile.sweep(_grant(Operation.MOBILE_SWEEP))
        if as_json:
            _print_json(report)
        else:
            out.print(f"revoked {len(report['revoked'])} mobile certificate(s); flagged "
                      f"{len(report['flagged'])} silent device(s)")
            for serial in report["revoked"]:
                out.print(f"  revoked {serial}")
            for device in report["flagged"]:
                out.print(f"  flagged device {device}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
