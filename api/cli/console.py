"""`jpki console …`: the operator console's people (counter clerks, call-centre agents,
supervisors). The first supervisor is made here; the console is at ``/console/`` of `jpki serve`."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    grant,
    group,
    open_services,
    out,
    print_json,
)
from jpki.access.authz import Operation
from jpki.access.console_accounts import ConsoleRole
from jpki.model import ClientStatus

app = group("The operator console's accounts (counter clerks, call centre, supervisors).")


@app.command("add")
def console_add(username: Annotated[str, typer.Argument(help="User name (a-z, 0-9, ._-).")],
                role: Annotated[ConsoleRole, typer.Option(help="clerk, agent or supervisor.")],
                municipality: Annotated[str | None, typer.Option(
                    help="A clerk's municipality code (6 digits).")] = None,
                data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Create a console account; prints its password and its TOTP secret once."""
    with open_services(data_dir, as_json) as services:
        new = services.console.create(grant(Operation.CONSOLE_ACCOUNT_CREATE),
                                      username=username, role=role,
                                      municipality_code=municipality)
        data = {"username": new.username, "role": new.role.value,
                "municipality": new.municipality_code, "password": new.password,
                "totp_secret": new.totp_secret, "totp_uri": new.totp_uri}
        if as_json:
            print_json(data)
        else:
            out.print(f"username:    {new.username}")
            out.print(f"password:    {new.password}")
            out.print(f"totp secret: {new.totp_secret}")
            out.print(f"totp uri:    {new.totp_uri}")
            out.print("[dim]shown once: give the password to its holder and add the TOTP "
                      "secret (or the URI as a QR code) to their authenticator app[/]")


@app.command("list")
def console_list(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """The console's accounts: role, municipality, status, lockout."""
    with open_services(data_dir, as_json) as services:
        rows = [{"username": a.username, "role": a.role, "municipality": a.municipality_code,
                 "status": a.status,
                 "locked_until": a.locked_until.isoformat() if a.locked_until else None}
                for a in services.console.accounts(grant(Operation.CONSOLE_ACCOUNT_READ))]
        if as_json:
            print_json({"accounts": rows})
            return
        for row in rows:
            out.print(" ".join(str(row[k] or "-") for k in row))


def _set_status(username: str, status: ClientStatus, data_dir: DataDir, as_json: bool) -> None:
    with open_services(data_dir, as_json) as services:
        services.console.set_status(grant(Operation.CONSOLE_ACCOUNT_SET_STATUS), username,
                                    status)
        print_json({"username": username, "status": status.value}) if as_json else \
            out.print(f"{username} {status.value}")


@app.command("suspend")
def console_suspend(username: Annotated[str, typer.Argument(help="User name.")],
                    data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Suspend an account: its sessions end at once and it cannot sign in."""
    _set_status(username, ClientStatus.SUSPENDED, data_dir, as_json)


@app.command("resume")
def console_resume(username: Annotated[str, typer.Argument(help="User name.")],
                   data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Resume an account (and lift a lockout)."""
    _set_status(username, ClientStatus.ACTIVE, data_dir, as_json)
