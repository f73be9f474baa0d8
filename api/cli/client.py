"""`jpki client …`: API clients (operators, stations, call centre)."""

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
from jpki.model import ClientRole, ClientStatus

app = group("API clients (operators, stations, call centre, RPs).")


@app.command("add")
def client_add(name: Annotated[str, typer.Option(help="A name for the client.")],
               role: Annotated[ClientRole, typer.Option(help="Role.")],
               scopes: Annotated[str, typer.Option(help="Comma-separated scopes.")] = "",
               station_kind: Annotated[str | None, typer.Option(
                   help="Stations: counter (default) or post_office (needs the "
                        "municipality:<code> scopes of the municipalities that designated it)."
               )] = None,
               data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Create an API client; prints its client_id and client_secret once."""
    with open_services(data_dir, as_json) as services:
        new = services.clients.create(grant(Operation.CLIENT_CREATE), name=name, role=role,
                                      scopes=[s for s in scopes.split(",") if s.strip()],
                                      station_kind=station_kind)
        data = {"client_id": new.client.client_id, "client_secret": new.client_secret,
                "role": role, "scopes": new.client.scopes.split(),
                "station_kind": new.client.station_kind}
        if as_json:
            print_json(data)
        else:
            out.print(f"client_id:     {new.client.client_id}")
            out.print(f"client_secret: {new.client_secret}")
            out.print("[dim]the secret is shown once; only a hash is kept[/]")


@app.command("suspend")
def client_suspend(client_id: Annotated[str, typer.Option(help="Client id.")],
                   data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Suspend a client: its requests are refused at once."""
    with open_services(data_dir, as_json) as services:
        services.clients.set_status(grant(Operation.CLIENT_SET_STATUS), client_id,
                                    ClientStatus.SUSPENDED)
        print_json({"client_id": client_id, "status": "suspended"}) if as_json else \
            out.print(f"{client_id} suspended")


@app.command("resume")
def client_resume(client_id: Annotated[str, typer.Option(help="Client id.")],
                  data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Lift a client's suspension."""
    with open_services(data_dir, as_json) as services:
        services.clients.set_status(grant(Operation.CLIENT_SET_STATUS), client_id,
                                    ClientStatus.ACTIVE)
        print_json({"client_id": client_id, "status": "active"}) if as_json else \
            out.print(f"{client_id} active")
