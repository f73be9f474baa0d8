"""`jpki cert …`: issue, renew, revoke and show certificates."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    escape,
    fail,
    grant,
    group,
    jsonable,
    open_services,
    out,
    parse,
    parse_date,
    pem,
    print_json,
    write_pem,
)
from jpki.access.authz import Operation
from jpki.issuance.service import KeyRequest
from jpki.lifecycle.cards import CardSpec
from jpki.model import CertKind, RevocationReason
from jpki.serials import parse_serial

if TYPE_CHECKING:
    from api.composition import Services

app = group("Issue, renew, revoke and show certificates.")


_KINDS = {"sign": CertKind.CARD_SIGN, "auth": CertKind.CARD_AUTH}


def _read_key(path: Path, as_json: bool) -> bytes:
    try:
        data = path.read_bytes()
    except OSError:
        fail("public_key.unreadable", f"cannot read {path}", as_json)
    return data


def _check_out(path: Path, as_json: bool) -> None:
    """Refuse an --out that cannot be written *before* anything is issued, so that a typo does not
    leave a signed certificate the operator never received."""
    parent = path.parent
    if (path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK)
            or (path.exists() and not os.access(path, os.W_OK))):
        fail("output.unwritable", f"cannot write {path}", as_json)


@app.command("issue")
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
        fail("request.invalid", "--kind is sign or auth", as_json)
    key = _read_key(public_key, as_json)
    _check_out(out_path, as_json)
    spec = CardSpec(number=card, expires_on=parse(parse_date, card_expiry, "date", as_json)
                    if card_expiry else None)
    with open_services(data_dir, as_json) as services:
        issued = services.issuance.issue(grant(Operation.CERTIFICATE_ISSUE), resident,
                                         [KeyRequest(cert_kind, key)], spec)
        _report_issued(services, issued[0].serial, issued[0].der, out_path, as_json)


@app.command("renew")
def cert_renew(
    serial: Annotated[str, typer.Option(help="Serial of the certificate to renew (hex).")],
    public_key: Annotated[Path, typer.Option(help="The card's new public key.")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the certificate PEM.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Renew a certificate (from 3 months before expiry); the old one is superseded."""
    canonical = parse(parse_serial, serial, "serial", as_json)
    key = _read_key(public_key, as_json)
    _check_out(out_path, as_json)
    with open_services(data_dir, as_json) as services:
        issued = services.issuance.renew_serial(grant(Operation.CERTIFICATE_RENEW), canonical, key)
        _report_issued(services, issued.serial, issued.der, out_path, as_json)


def _report_issued(services: Services, serial: str, der: bytes, out_path: Path,
                   as_json: bool) -> None:
    try:
        write_pem(out_path, der)
    except OSError:
        fail("output.unwritable", f"certificate {serial} was issued but {out_path} could not be "
             f"written; `jpki cert show --serial {serial} --json` prints its PEM", as_json)
    view = services.certificates.show(grant(Operation.CERTIFICATE_READ), serial)
    if as_json:
        data = jsonable(view)
        data["out"] = str(out_path)
        print_json(data)
    else:
        out.print(f"issued {view.kind} {view.serial} valid to {view.not_after.isoformat()} "
                  f"→ {escape(str(out_path))}")


@app.command("revoke")
def cert_revoke(
    serial: Annotated[str, typer.Option(help="Serial (hex).")],
    reason: Annotated[str, typer.Option(help="RFC 5280 reason, e.g. keyCompromise.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Revoke a certificate. Idempotent."""
    canonical = parse(parse_serial, serial, "serial", as_json)
    parsed = parse(RevocationReason.parse, reason, "reason", as_json)
    with open_services(data_dir, as_json) as services:
        result = services.revocation.revoke(grant(Operation.CERTIFICATE_REVOKE), canonical, parsed)
        if as_json:
            print_json({"serial": result.serial, "reason": result.reason.rfc_name,
                        "revoked_at": result.revoked_at, "changed": result.changed})
        else:
            state = "revoked" if result.changed else "already revoked"
            out.print(f"{result.serial} {state}: {result.reason.rfc_name} at "
                      f"{result.revoked_at.isoformat()}")


@app.command("show")
def cert_show(serial: Annotated[str, typer.Option(help="Serial (hex).")],
              data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Show a certificate's status, validity, revocation and linkage."""
    canonical = parse(parse_serial, serial, "serial", as_json)
    with open_services(data_dir, as_json) as services:
        view = services.certificates.show(grant(Operation.CERTIFICATE_READ), canonical)
        if as_json:
            data = jsonable(view)
            if view.der:
                data["pem"] = pem(view.der).decode("ascii")
            print_json(data)
        else:
            from rich.table import Table

            table = Table(show_header=False)
            for key, value in jsonable(view).items():
                if value is not None:
                    table.add_row(key, str(value))
            out.print(table)


@app.command("reconcile")
def cert_reconcile(
    older_than: Annotated[int, typer.Option(help="Seconds a pending intent may wait.")] = 300,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Abandon issuance intents that never completed (they are then reported as revoked)."""
    with open_services(data_dir, as_json) as services:
        serials = services.issuance.abandon_stale(grant(Operation.PENDING_ABANDON),
                                                  timedelta(seconds=older_than))
        if as_json:
            print_json({"abandoned": serials})
        else:
            out.print(f"abandoned {len(serials)} pending intent(s)")
