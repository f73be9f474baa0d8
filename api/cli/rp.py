"""``jpki rp …``: registering relying parties, rotating their secrets, suspending them."""

from __future__ import annotations

from datetime import timedelta
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
    group,
    open_services,
    out,
    print_json,
)
from jpki.access.authz import Operation
from jpki.model import ClientStatus, RelyingPartyKind

if TYPE_CHECKING:
    from jpki.relying_parties.service import RelyingPartyView

app = group("Relying parties (署名検証者): register, rotate secrets, suspend.")

RpId = Annotated[str, typer.Option("--id", help="Relying party id (rp_…).")]


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _show(view: RelyingPartyView) -> None:
    out.print(f"{view.id} {view.kind} {view.status} {escape(view.name)}"
              + (f" (under {view.parent_id})" if view.parent_id else ""))
    out.print(f"  purposes: {', '.join(view.purposes)}")
    for client in view.clients:
        until = client["previous_secret_valid_until"]
        out.print(f"  client {client['client_id']} {client['status']} scopes: {client['scopes']}"
                  + (f"; previous secret valid until {until}" if until else ""))


@app.command("add")
def rp_add(
    name: Annotated[str, typer.Option(help="The business's name.")],
    kind: Annotated[RelyingPartyKind, typer.Option(
        help="platform_operator (certified, queries itself) or service_provider (under a "
             "platform operator).")],
    purpose: Annotated[list[str], typer.Option(
        help="A declared purpose code (repeatable, or comma-separated), e.g. account_opening.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: status, linkage, basic4.")],
    parent: Annotated[str | None, typer.Option(
        help="A service provider's platform operator (rp_…).")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Register a relying party and its API client; prints the client id and secret once."""
    with open_services(data_dir, as_json) as services:
        new = services.relying_parties.register(
            grant(Operation.RP_REGISTER), name=name, kind=kind, purposes=_split(purpose),
            scopes=_split([scopes]), parent_id=parent)
        if as_json:
            print_json({"relying_party": new.relying_party, "client_id": new.client_id,
                        "client_secret": new.client_secret})
            return
        _show(new.relying_party)
        out.print(f"client_id:     {new.client_id}")
        out.print(f"client_secret: {new.client_secret}")
        out.print("[dim]the secret is shown once; only a hash is kept[/]")


@app.command("list")
def rp_list(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """List relying parties, their purposes, status and clients."""
    with open_services(data_dir, as_json) as services:
        views = services.relying_parties.list_all(grant(Operation.RP_READ))
        if as_json:
            print_json(views)
            return
        from rich.table import Table

        table = Table("id", "kind", "status", "name", "parent", "purposes", "clients")
        for v in views:
            table.add_row(v.id, v.kind, v.status, escape(v.name), v.parent_id or "",
                          ", ".join(v.purposes),
                          ", ".join(str(c["client_id"]) for c in v.clients))
        out.print(table)


@app.command("rotate-secret")
def rp_rotate_secret(
    rp_id: RpId,
    client: Annotated[str | None, typer.Option(
        help="The client whose secret to rotate, when the relying party has several.")] = None,
    overlap_hours: Annotated[float | None, typer.Option(
        help="How long the old secret stays valid (default: JPKI_RP_SECRET_OVERLAP_HOURS, "
             "24; 0 stops it at once).")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOut = False,
) -> None:
    """Give a relying party's client a new secret; the old one stays valid for the overlap."""
    if overlap_hours is not None and not 0 <= overlap_hours <= 90 * 24:
        fail("rp.invalid", "--overlap-hours is 0 to 2160", as_json)
    overlap = timedelta(hours=overlap_hours) if overlap_hours is not None else None
    with open_services(data_dir, as_json) as services:
        rotated = services.relying_parties.rotate_secret(
            grant(Operation.RP_ROTATE_SECRET), rp_id, client_id=client, overlap=overlap)
        if as_json:
            print_json(rotated)
            return
        out.print(f"client_id:     {rotated.client_id}")
        out.print(f"client_secret: {rotated.client_secret}")
        out.print("previous secret: " + (f"valid until {rotated.previous_valid_until}"
                                         if rotated.previous_valid_until else "refused now"))


def _set_status(rp_id: str, status: ClientStatus, data_dir: Path, as_json: bool) -> None:
    with open_services(data_dir, as_json) as services:
        view = services.relying_parties.set_status(grant(Operation.RP_SET_STATUS), rp_id, status)
        if as_json:
            data: dict[str, Any] = {"id": view.id, "status": view.status,
                                    "clients": [c["client_id"] for c in view.clients]}
            print_json(data)
        else:
            _show(view)


@app.command("suspend")
def rp_suspend(rp_id: RpId, data_dir: DataDir = DEFAULT_DATA_DIR,
               as_json: JsonOut = False) -> None:
    """Suspend a relying party: every call by any of its clients is refused at once (and a
    platform operator's suspension stops its service providers' calls too)."""
    _set_status(rp_id, ClientStatus.SUSPENDED, data_dir, as_json)


@app.command("resume")
def rp_resume(rp_id: RpId, data_dir: DataDir = DEFAULT_DATA_DIR,
              as_json: JsonOut = False) -> None:
    """Lift a relying party's suspension."""
    _set_status(rp_id, ClientStatus.ACTIVE, data_dir, as_json)
