"""`jpki mobile sweep`: the layered measures (重層的な措置) over mobile certificates."""

from __future__ import annotations

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

app = group("Smartphone certificates.")


@app.command("sweep")
def mobile_sweep(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonOut = False) -> None:
    """重層的な措置: revoke mobile certificates whose card certificate is no longer valid or
    whose resident record has ended; flag devices that have not checked in for long."""
    with open_services(data_dir, as_json) as services:
        report = services.mobile.sweep(grant(Operation.MOBILE_SWEEP))
        if as_json:
            print_json(report)
        else:
            out.print(f"revoked {len(report['revoked'])} mobile certificate(s); flagged "
                      f"{len(report['flagged'])} silent device(s)")
            for serial in report["revoked"]:
                out.print(f"  revoked {serial}")
            for device in report["flagged"]:
                out.print(f"  flagged device {device}")
