"""`jpki resident …`: residents and resident-registry events."""

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
    parse,
    parse_date,
    print_json,
)
from jpki.access.authz import Operation
from jpki.registry.residents import EventKind, ResidentEvent

app = group("Residents and resident-registry events.")


@app.command("add")
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
    birth_date = parse(parse_date, birth, "date of birth", as_json)
    with open_services(data_dir, as_json) as services:
        resident = services.residents.register(
            grant(Operation.RESIDENT_REGISTER), name=name, birth_date=birth_date, sex=sex,
            address=address, municipality_code=municipality, dv_support=dv_support)
        if as_json:
            print_json({"id": resident.id})
        else:
            out.print(resident.id)


@app.command("event")
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
        birth_date=parse(parse_date, birth, "date", as_json) if birth else None,
        date=parse(parse_date, event_date, "date", as_json) if event_date else None,
        municipality_code=municipality)
    with open_services(data_dir, as_json) as services:
        outcome = services.residents.record_event(grant(Operation.RESIDENT_EVENT), resident,
                                                  event)
        result = {"resident": outcome.resident.id, "changed": outcome.changed,
                  "revoked": [{"serial": r.serial, "reason": r.reason.rfc_name,
                               "revoked_at": r.revoked_at} for r in outcome.revocations]}
        if as_json:
            print_json(result)
        else:
            out.print(f"{kind.value}: {'recorded' if outcome.changed else 'no change'}; "
                      f"revoked {len(outcome.revocations)} certificate(s)")
            for r in outcome.revocations:
                out.print(f"  {r.serial} {r.reason.rfc_name} at {r.revoked_at.isoformat()}")


@app.command("show")
def resident_show(resident: Annotated[str, typer.Option(help="Resident id.")],
                  data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Show a resident's record status and certificates (no personal data)."""
    with open_services(data_dir, as_json) as services:
        r = services.residents.get(grant(Operation.RESIDENT_READ), resident)
        with services.uow() as uow:
            certs = [c.serial for c in uow.certificates.for_resident(r.id)]
        views = [services.certificates.show(grant(Operation.CERTIFICATE_READ), s) for s in certs]
        data = {"id": r.id, "municipality": r.municipality_code,
                "registry_source": r.registry_source, "status": r.status,
                "dv_support": r.dv_support, "emigrated_on": r.emigrated_on,
                "certificates": views}
        if as_json:
            print_json(data)
        else:
            out.print(f"{r.id} {r.status.value} municipality {r.municipality_code}")
            for view in views:
                out.print(f"  {view.serial} {view.kind} {view.status} until "
                          f"{view.not_after.isoformat()}")
