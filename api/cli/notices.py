"""`jpki notices expiry`: the expiry notices' list (有効期限通知書) of one municipality."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    err,
    escape,
    fail,
    grant,
    group,
    open_services,
    parse,
    parse_date,
)
from jpki.access.authz import Operation

app = group("Notices to holders: who must be told their certificates expire.")


@app.command("expiry")
def expiry(
    municipality: Annotated[str, typer.Option(help="The 6-digit municipality code.")],
    start: Annotated[str, typer.Option("--from", help="First JST date of the window "
                                       "(YYYY-MM-DD), included.")],
    end: Annotated[str, typer.Option("--to", help="JST date ending the window, excluded.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    output: Annotated[Path | None, typer.Option(
        help="Write to this file (created, mode 0600) instead of standard output.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """The holders of MUNICIPALITY whose card certificates expire in [FROM, TO): one row per
    holder with the name, the address, the expiry date and the certificates — what a notice
    run needs and no more. The export is audited (counts only)."""
    as_json = fmt == "json"
    if fmt not in ("csv", "json"):
        fail("request.invalid", "format is csv or json", as_json)
    if output is not None and output.exists():
        fail("request.invalid", "the output file exists; it is never overwritten", as_json)
    first = parse(parse_date, start, "--from date", as_json)
    last = parse(parse_date, end, "--to date", as_json)
    from jpki.registry.expiry_notices import as_csv
    from jpki.registry.expiry_notices import as_json as json_chunks

    with open_services(data_dir, as_json) as services:
        export = services.expiry_notices.export(grant(Operation.EXPIRY_NOTICES), municipality,
                                                first, last, fmt)
        try:
            chunks = json_chunks(export) if as_json else as_csv(export.notices)
            if output is None:
                for chunk in chunks:
                    sys.stdout.write(chunk)
                if as_json:
                    sys.stdout.write("\n")
            else:
                # Names and addresses: readable by the operator alone.
                with open(output, "x", encoding="utf-8", opener=_private) as fh:
                    for chunk in chunks:
                        fh.write(chunk)
                err.print(f"{export.count} notice(s) written to {escape(str(output))}")
        finally:
            export.close()


def _private(path: str, flags: int) -> int:
    import os

    return os.open(path, flags, 0o600)
