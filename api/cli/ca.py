"""`jpki ca …`: CA generations (rollover, list, export)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    write_pem,
)
from jpki.access.authz import Operation
from jpki.model import CaKind

app = group("CA generations.")


@app.command("rollover")
def ca_rollover(ca: Annotated[CaKind, typer.Option(help="sign or auth.")],
                data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Add a CA generation (same DN, new key); earlier ones stay valid for what they issued."""
    with open_services(data_dir, as_json) as services:
        gen = services.cas.rollover(grant(Operation.CA_ROLLOVER), ca)
        data = {"ca": gen.ca, "generation": gen.generation, "key_label": gen.key_label,
                "not_after": gen.not_after}
        print_json(data) if as_json else out.print(
            f"{gen.ca.value} CA generation {gen.generation} ({gen.key_label})")


@app.command("list")
def ca_list(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """List CA generations."""
    with open_services(data_dir, as_json) as services:
        generations = services.cas.generations()
        if as_json:
            print_json([{"ca": g.ca, "generation": g.generation, "key_label": g.key_label,
                         "not_before": g.not_before, "not_after": g.not_after}
                        for g in generations])
            return
        from rich.table import Table

        table = Table("CA", "generation", "key", "not before", "not after")
        for g in generations:
            table.add_row(g.ca.value, str(g.generation), g.key_label, g.not_before.isoformat(),
                          g.not_after.isoformat())
        out.print(table)


@app.command("export")
def ca_export(out_dir: Annotated[Path, typer.Option("--out", help="Directory for PEM files.")],
              data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """Write every CA generation and OCSP responder certificate as PEM (for openssl etc.)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        fail("output.unwritable", f"cannot create {out_dir}", as_json)
    written = []
    with open_services(data_dir, as_json) as services, services.uow() as uow:
        try:
            for gen in uow.cas.generations():
                path = out_dir / f"{gen.ca.value}-ca-g{gen.generation:02d}.pem"
                write_pem(path, gen.certificate_der)
                written.append(str(path))
                for responder in uow.cas.responders(gen.id or 0)[-1:]:
                    rpath = out_dir / f"{gen.ca.value}-ocsp-g{gen.generation:02d}.pem"
                    write_pem(rpath, responder.certificate_der)
                    written.append(str(rpath))
        except OSError:
            fail("output.unwritable", f"cannot write into {out_dir}", as_json)
    if as_json:
        print_json({"written": written})
    else:
        for w in written:
            out.print(escape(w))
